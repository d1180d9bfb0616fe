"""Host-side (NumPy) train-time augmentation of batches: random crop with zero padding and
random horizontal flip, as torchvision's RandomCrop(size, padding) and
RandomHorizontalFlip() do per example (the paper's data setup)."""

from __future__ import annotations

import numpy as np


def random_crop(images: np.ndarray, rng: np.random.Generator, padding: int) -> np.ndarray:
    """Pads H and W with `padding` zeros on each side, then crops back to H x W at an offset
    drawn uniformly from {0, ..., 2 * padding} (rows and columns independently) per example.

    Args:
      images: [B, ..., H, W, C] (any dtype); the same offset is used for all middle axes
        of one example (e.g. all time steps of an event recording).
      rng: source of the offsets.
      padding: pixels of zero padding per side (>= 0).
    Returns:
      array with the shape and dtype of `images`.
    """
    if images.ndim < 4:
        raise ValueError(f"images must be [B, ..., H, W, C], got shape {images.shape}")
    batch = images.shape[0]
    height, width = images.shape[-3:-1]
    offsets = rng.integers(0, 2 * padding + 1, size=(batch, 2))
    pad_width = [(0, 0)] * (images.ndim - 3) + [(padding, padding), (padding, padding), (0, 0)]
    padded = np.pad(images, pad_width)
    cropped = np.empty_like(images)
    for index, (row, column) in enumerate(offsets):
        cropped[index] = padded[index, ..., row : row + height, column : column + width, :]
    return cropped


def random_horizontal_flip(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirrors the W axis of each example of [B, ..., H, W, C] with probability 1/2."""
    flips = rng.random(images.shape[0]) < 0.5
    flipped = images.copy()
    flipped[flips] = images[flips][..., ::-1, :]
    return flipped

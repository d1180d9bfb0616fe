"""The default, offline dataset: scikit-learn's handwritten digits (8 x 8, 10 classes).

1797 images with pixel values 0..16, split once and for all into a stratified 80 / 20
train / eval split (train_test_split, random_state=0: 1437 / 360). Pixels are scaled by
1/16 to [0, 1] and normalised with the train split's mean and std (normalization "digits").
No augmentation. Batches: "image" float32 [B, 8, 8, 1], "label" int32 [B], "mask" [B].
"""

from __future__ import annotations

import numpy as np

from glif_jax.data.batching import array_batches
from glif_jax.data.info import DatasetInfo
from glif_jax.data.normalization import normalize
from glif_jax.data.options import BatchRequest, DatasetOptions
from glif_jax.extras import require

SPLIT_SEED = 0
EVAL_FRACTION = 0.2
MAX_PIXEL = 16.0


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns (images float32 [N, 8, 8, 1] in [0, 1], labels int32 [N])."""
    feature = "The digits dataset (scikit-learn)"
    load_digits = require("sklearn.datasets", "train", feature).load_digits
    train_test_split = require("sklearn.model_selection", "train", feature).train_test_split

    digits = load_digits()
    indices = np.arange(len(digits.target))
    train_indices, eval_indices = train_test_split(
        indices, test_size=EVAL_FRACTION, stratify=digits.target, random_state=SPLIT_SEED
    )
    chosen = train_indices if split == "train" else eval_indices
    images = (digits.images[chosen] / MAX_PIXEL).astype(np.float32)[..., None]
    labels = digits.target[chosen].astype(np.int32)
    return images, labels


def _normalize(images: np.ndarray) -> np.ndarray:
    return normalize(images, "digits")


def build(options: DatasetOptions, request: BatchRequest):
    """(iterable of batches, DatasetInfo) for "digits"."""
    images, labels = load_split(request.split)
    batches = array_batches(images, labels, request, eval_preprocess=_normalize)
    return batches, DatasetInfo("digits", 10, len(labels), (8, 8, 1))

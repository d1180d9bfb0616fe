"""Per-dataset channel means and standard deviations (the paper's data setup) and the normalisation."""

from __future__ import annotations

import numpy as np

from glif_jax.errors import check_choice

# name -> (mean per channel, std per channel), for pixels scaled to [0, 1].
MEAN_STD: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # scikit-learn digits, pixels 0..16 scaled by 1/16: statistics of this package's
    # training split (see glif_jax.data.digits), one grey channel.
    "digits": ((0.3054,), (0.3761,)),
}


def mean_std(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns (mean, std) as float32 arrays [C] for a normalisation name."""
    mean, std = MEAN_STD[check_choice("normalization", name, tuple(MEAN_STD))]
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def normalize(unit_images: np.ndarray, name: str, *, pixel_scale: float = 1.0) -> np.ndarray:
    """(x * pixel_scale - mean) / std per channel.

    Args:
      unit_images: [..., C] pixels; in [0, 1] once multiplied by `pixel_scale`.
      name: key of MEAN_STD.
      pixel_scale: e.g. 1 / 255 for uint8 pixels.
    Returns:
      float32 array, same shape.
    """
    mean, std = mean_std(name)
    normalised = np.array(unit_images, dtype=np.float32)  # a fresh copy, updated in place
    normalised *= np.float32(pixel_scale) / std
    normalised -= mean / std
    return normalised


def normalize_uint8(images: np.ndarray, name: str) -> np.ndarray:
    """Scales uint8 pixels [..., C] by 1/255 to [0, 1], then normalises; returns float32."""
    return normalize(images, name, pixel_scale=1.0 / 255.0)

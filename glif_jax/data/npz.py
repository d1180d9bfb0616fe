"""Images from .npz files ("npz" dataset), e.g. CIFAR-10 as uint8 arrays.

Each file holds `x` uint8 [N, H, W, C] and `y` integer labels [N], optionally `classes`
(names; their count is num_classes, else max(y) + 1). config.dataset.train_path /
eval_path name the files of the "train" / "eval" split; config.dataset.normalization names
the mean/std ("cifar10", "cifar100", "imagenet"). Preprocessing is CIFAR's, as in the paper:
train-time random crop with 4-pixel zero padding and flip, then scale and normalise.
A file is read once per process while it is unchanged (cached by path, modification time
and size; read-only arrays), so the train stream rebuilt every epoch does not read it again.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from glif_jax.data import cifar
from glif_jax.data.batching import array_batches
from glif_jax.data.errors import DatasetNotFoundError
from glif_jax.data.info import DatasetInfo
from glif_jax.data.normalization import mean_std
from glif_jax.data.options import BatchRequest, DatasetOptions


CACHED_FILES = 4  # train + eval of two runs in one process


def load(path: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Returns (images uint8 [N, H, W, C], labels int32 [N], num_classes) of one file.

    The arrays are read-only: they are shared by every call while the file is unchanged."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise DatasetNotFoundError(
            "npz",
            path,
            "Point config.dataset.train_path / eval_path at .npz files holding `x` uint8 "
            "[N, H, W, C] and `y` integer labels [N].",
        )
    status = os.stat(path)
    return _read(path, status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=CACHED_FILES)
def _read(path: str, modified_ns: int, size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``load`` of the file at ``path`` as it is at (modification time, size): the cache key."""
    with np.load(path) as arrays:
        missing = {"x", "y"} - set(arrays.files)
        if missing:
            raise ValueError(f"{path} lacks the arrays {sorted(missing)} (needs x and y)")
        images, labels = arrays["x"], arrays["y"]
        num_classes = len(arrays["classes"]) if "classes" in arrays.files else int(labels.max()) + 1
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"{path}: x must be uint8 [N, H, W, C], got {images.dtype} {images.shape}"
        )
    if labels.shape != (len(images),):
        raise ValueError(f"{path}: y must be [N={len(images)}], got shape {labels.shape}")
    labels = labels.astype(np.int32)
    images.flags.writeable = labels.flags.writeable = False  # shared by the cache
    return images, labels, num_classes


def build(options: DatasetOptions, request: BatchRequest):
    """(iterable of batches, DatasetInfo) for the "npz" dataset."""
    argument = "train_path" if request.split == "train" else "eval_path"
    path = getattr(options, argument)
    if not path:
        raise ValueError(f"dataset_config.{argument} is required for the 'npz' dataset")
    if options.normalization is None:
        raise ValueError("dataset_config.normalization is required for the 'npz' dataset")
    mean_std(options.normalization)  # checks the name early
    images, labels, num_classes = load(path)
    train, evaluate = cifar.preprocessing(options.normalization)
    batches = array_batches(
        images,
        labels,
        request,
        eval_preprocess=evaluate,
        train_preprocess=train if options.augment else None,
    )
    return batches, DatasetInfo("npz", num_classes, len(labels), tuple(images.shape[1:]))

"""The two inputs of every pipeline: the dataset's options and what the caller asks for."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

SPLITS = ("train", "eval")


@dataclasses.dataclass(frozen=True)
class DatasetOptions:
    """`config.dataset`, read once and checked.

    Attributes:
      name: registry name.
      data_dir: tfds data_dir / tonic save_to / parent of the ImageNet manual dir;
        None = the library's default.
      train_path, eval_path: .npz files for the "npz" dataset.
      normalization: normalisation name for the "npz" dataset ("cifar10", ...).
      augment: train-time augmentation on (only applied when `train=True`).
      cache_dir: where converted CIFAR10-DVS frames are cached; None = next to the data.
      prefetch: host batches prepared ahead by a background thread (0 = none).
    """

    name: str
    data_dir: str | None = None
    train_path: str | None = None
    eval_path: str | None = None
    normalization: str | None = None
    augment: bool = True
    cache_dir: str | None = None
    prefetch: int = 2

    @classmethod
    def from_config(cls, dataset_config: Any) -> DatasetOptions:
        """Reads a ConfigDict / mapping; missing fields take the defaults above."""
        if not hasattr(dataset_config, "get"):
            raise TypeError(
                "dataset_config must be a ConfigDict or a mapping with a 'name', "
                f"got {type(dataset_config).__name__}"
            )
        values = {}
        for field in dataclasses.fields(cls):
            value = dataset_config.get(field.name, None)
            if value is not None:
                values[field.name] = value
        if "name" not in values:
            raise ValueError("dataset_config.name is required (e.g. 'digits')")
        options = cls(**values)
        if not isinstance(options.prefetch, int) or options.prefetch < 0:
            raise ValueError(
                f"dataset_config.prefetch must be an int >= 0, got {options.prefetch!r}"
            )
        return options


@dataclasses.dataclass(frozen=True)
class BatchRequest:
    """What the caller of `glif_jax.data.build` asks for.

    Attributes:
      split: "train" or "eval".
      batch_size: examples per batch on this process.
      seed: seed of shuffling and augmentation (same on every process).
      train: True = infinite, reshuffled, augmented stream; False = one ordered pass.
      shard_index, shard_count: this process's disjoint part of the data.
      drop_remainder: drop (True) or pad and mask (False) a last partial batch.
    """

    split: str
    batch_size: int
    seed: int
    train: bool
    shard_index: int = 0
    shard_count: int = 1
    drop_remainder: bool = False

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        if not _is_int(self.shard_count) or self.shard_count < 1:
            raise ValueError(f"shard_count must be an int >= 1, got {self.shard_count!r}")
        if not _is_int(self.shard_index) or not 0 <= self.shard_index < self.shard_count:
            raise ValueError(
                f"shard_index must be an int in [0, shard_count={self.shard_count}), "
                f"got {self.shard_index!r}"
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


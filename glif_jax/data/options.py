"""The two inputs of every pipeline: the dataset's options and what the caller asks for."""

from __future__ import annotations

import dataclasses
import numbers
import os
from typing import Any

from glif_jax.data.normalization import MEAN_STD, mean_std
from glif_jax.data.registry import DATASET_NAMES
from glif_jax.errors import OptionError, check_choice, check_flag, check_integer, check_known

SPLITS = ("train", "eval")
SPLIT_FILES = {"train": "train_path", "eval": "eval_path"}   # the "npz" dataset's file of each split


@dataclasses.dataclass(frozen=True)
class DatasetOptions:
    """`config.dataset`, read once and checked.

    Attributes:
      name: registry name (`glif_jax.data.DATASET_NAMES`).
      data_dir: tfds data_dir / tonic save_to / parent of the ImageNet manual dir;
        None = the library's default.
      train_path, eval_path: .npz files for the "npz" dataset (each needed for its split:
        `check_split`).
      normalization: normalisation name for the "npz" dataset ("cifar10", ...); required there.
      augment: train-time augmentation on (only applied when `train=True`).
      cache_dir: where converted CIFAR10-DVS frames are cached; None = next to the data.
      prefetch: host batches prepared ahead by a background thread (0 = none).

    Every field is checked on construction; a bad one raises
    :class:`~glif_jax.errors.OptionError` naming it.
    """

    name: str
    data_dir: str | None = None
    train_path: str | None = None
    eval_path: str | None = None
    normalization: str | None = None
    augment: bool = True
    cache_dir: str | None = None
    prefetch: int = 2

    def __post_init__(self):
        if not isinstance(self.name, str) or self.name not in DATASET_NAMES:
            raise OptionError("name", f"unknown dataset {self.name!r}; known names: {', '.join(DATASET_NAMES)}")
        for option in ("data_dir", "train_path", "eval_path", "cache_dir"):
            value = getattr(self, option)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise OptionError(option, f"expected a path or None, got {value!r}")
        if self.normalization is not None:
            mean_std(self.normalization)
        elif self.name == "npz":
            raise OptionError("normalization", f"required for the 'npz' dataset: one of {tuple(MEAN_STD)} "
                                               "(the mean and std its images are normalised with)")
        check_flag("augment", self.augment)
        check_integer("prefetch", self.prefetch, minimum=0)

    def check_split(self, split: str) -> None:
        """Raises :class:`OptionError` when these options cannot give ``split`` ("train" or
        "eval"): the "npz" dataset needs that split's file."""
        option = SPLIT_FILES[check_choice("split", split, SPLITS)]
        if self.name == "npz" and not getattr(self, option):
            raise OptionError(option, f"required for the 'npz' dataset: the {split} split's .npz file "
                                      "(x uint8 [N, H, W, C], y integer labels [N])")

    @classmethod
    def from_config(cls, dataset_config: Any) -> DatasetOptions:
        """Reads a ConfigDict / mapping (a DatasetOptions is returned as is); missing or None
        fields take the defaults above, an unknown one is an error."""
        if isinstance(dataset_config, cls):
            return dataset_config
        if not hasattr(dataset_config, "get"):
            raise TypeError(
                "dataset_config must be a ConfigDict or a mapping with a 'name', "
                f"got {type(dataset_config).__name__}"
            )
        fields = [field.name for field in dataclasses.fields(cls)]
        check_known(dataset_config.keys(), fields, "a dataset")
        values = {field: dataset_config[field] for field in fields
                  if dataset_config.get(field, None) is not None}
        if "name" not in values:
            raise OptionError("name", f"required: one of {', '.join(DATASET_NAMES)}")
        return cls(**values)


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
        check_choice("split", self.split, SPLITS)
        for option, minimum in (("batch_size", 1), ("seed", 0), ("shard_count", 1)):
            check_integer(option, getattr(self, option), minimum=minimum)
        if not _is_int(self.shard_index) or not 0 <= self.shard_index < self.shard_count:
            raise OptionError("shard_index", f"expected an integer in [0, shard_count={self.shard_count}), "
                                             f"got {self.shard_index!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


"""Input pipelines: host batches of NumPy arrays for every dataset of the project.

    batches, info = glif_jax.data.build(config.dataset, split="train", batch_size=64,
                                        seed=0, train=True)

Every batch is a dict: "image" float32 — [B, H, W, C] for images, [B, 16, 48, 48, 2] for
CIFAR10-DVS event frames — "label" int32 [B] and "mask" float32 [B] (1 = real example,
0 = padding of a last partial batch). train=True gives a train stream, built once per
run: `batches.epoch(e)` yields the batches of training epoch e without end (pass after
pass over the split, each reshuffled; a training epoch takes its first steps_per_epoch
batches), in an order drawn from (`seed`, e) alone, with augmentation when
config.dataset.augment; iterating the stream itself gives epoch 0. train=False gives
exactly one ordered pass over the split (re-iterable): the last partial batch is
zero-padded and masked unless drop_remainder=True.
With shard_index / shard_count every process reads its own disjoint part and all
processes yield the same number of batches. Nothing is ever downloaded: a missing dataset
raises DatasetNotFoundError saying where to put it and how to get it.
"""

from __future__ import annotations

import importlib
from typing import Any

from glif_jax.data.errors import DatasetNotFoundError
from glif_jax.data.info import DatasetInfo
from glif_jax.data.options import BatchRequest, DatasetOptions
from glif_jax.data.prefetch import Prefetched, prefetch_to_device
from glif_jax.data.registry import BUILDER_MODULES, DATASET_NAMES

__all__ = [
    "DATASET_NAMES",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DatasetOptions",
    "Prefetched",
    "build",
    "prefetch_to_device",
]


def build(
    dataset_config: Any,
    *,
    split: str,
    batch_size: int,
    seed: int,
    train: bool,
    shard_index: int = 0,
    shard_count: int = 1,
    drop_remainder: bool | None = None,
):
    """Builds the host input pipeline of one split for this process.

    Args:
      dataset_config: a DatasetOptions, or `config.dataset` (ConfigDict or mapping) to read as one.
      split: "train" or "eval".
      batch_size: examples per batch on this process.
      seed: seed of shuffling and augmentation; equal on all processes.
      train: True = a train stream with ``epoch(e)`` (reshuffled, augmented); False = one
        ordered pass.
      shard_index, shard_count: this process's disjoint shard.
      drop_remainder: None = drop the last partial batch when training, pad and mask it
        when evaluating.
    Returns:
      (batches, info): a re-iterable of batch dicts (with ``epoch(e)`` when train=True,
      len() when train=False), and the DatasetInfo of the split.
    """
    options = DatasetOptions.from_config(dataset_config)
    request = BatchRequest(
        split=split,
        batch_size=batch_size,
        seed=seed,
        train=bool(train),
        shard_index=shard_index,
        shard_count=shard_count,
        drop_remainder=bool(train) if drop_remainder is None else bool(drop_remainder),
    )
    module = importlib.import_module(BUILDER_MODULES[options.name])
    batches, info = module.build(options, request)
    if options.prefetch > 0:
        batches = Prefetched(batches, options.prefetch)
    return batches, info

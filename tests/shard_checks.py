"""Multi-process data: the shards that ``glif_jax.data.build`` gives processes 0 .. N-1 of a run
(``shard_index`` / ``shard_count``, as the training loop passes ``jax.process_index()`` /
``jax.process_count()``) are disjoint and cover the split.

Examples are told apart by their label and preprocessed image bytes (unaugmented: the same
example comes out the same in a train batch and in an eval batch).
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any, Iterable

import numpy as np

from glif_jax import data


def example_keys(batches: Iterable[dict[str, np.ndarray]]) -> Counter:
    """How often each (label, image bytes) occurs among the real (unmasked) rows of ``batches``."""
    keys = Counter()
    for batch in batches:
        for image, label, mask in zip(batch["image"], batch["label"], batch["mask"]):
            if mask == 1:
                keys[int(label), np.ascontiguousarray(image, np.float32).tobytes()] += 1
    return keys


def assert_shards_partition_the_split(dataset: dict[str, Any], split: str, *, eval_batch_size: int,
                                      train_batch_size: int, shard_count: int = 2) -> None:
    """Eval passes of ``shard_count`` processes: equally many batches, together every example of
    ``split`` exactly once (a padded last batch included). Train streams: one pass of each shard
    holds no example twice across shards and together all but the ``N mod shard_count`` examples
    cut so that every process runs the same number of steps (``train_batch_size`` must divide
    ``N // shard_count``). ``dataset`` must not augment."""
    def build(train: bool, batch_size: int, shard_index: int = 0, count: int = 1):
        batches, info = data.build(dataset, split=split, batch_size=batch_size, seed=3, train=train,
                                   shard_index=shard_index, shard_count=count)
        return batches, info

    whole_pass, info = build(False, eval_batch_size)
    everything = example_keys(whole_pass)
    size = sum(everything.values())
    assert size == info.num_examples

    passes = [list(build(False, eval_batch_size, k, shard_count)[0]) for k in range(shard_count)]
    assert len({len(one) for one in passes}) == 1, [len(one) for one in passes]
    assert any(batch["mask"].min() == 0 for one in passes for batch in one), "no padded batch: pick another size"
    assert sum((example_keys(one) for one in passes), Counter()) == everything

    per_shard = size // shard_count
    assert per_shard % train_batch_size == 0, "train_batch_size must divide the examples per shard"
    steps = per_shard // train_batch_size
    parts = [example_keys(itertools.islice(build(True, train_batch_size, k, shard_count)[0].epoch(0), steps))
             for k in range(shard_count)]
    union = sum(parts, Counter())
    assert not union - everything, "an example in two shards (or not of the split)"
    assert sum(union.values()) == size - size % shard_count

"""Reference orders of the train streams, written out independently of glif_jax.data.

A training run of glif-jax (since 0.2) uses, in epoch e, the batches of a stream whose
data seed is S = 31 bits of NumPy's ``SeedSequence([seed, e])``. For in-memory splits,
pass p over the split is ``default_rng((S, 0, p)).permutation(N)``; process k of n takes
its every n-th example from k, cut to N // n, in full batches, each sorted by index;
augmentation draws from ``default_rng((S, 1, p, k))``, batch after batch. These helpers
compute that order from the definitions, so the tests can check that the pipelines keep
it bit for bit (runs and resumes stay bit-identical across versions).
"""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np

from tests.comparison import assert_bit_identical


def reference_epoch_seed(seed: int, epoch: int) -> int:
    """S of epoch ``epoch``: the top 31 of the first 32 bits of SeedSequence([seed, epoch])."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] >> 1)


def reference_indices(num_examples: int, batch_size: int, seed: int, epoch: int, count: int, *,
                      shard_index: int = 0, shard_count: int = 1) -> list[tuple[int, np.ndarray]]:
    """(pass, example indices) of the first ``count`` train batches of epoch ``epoch``."""
    data_seed = reference_epoch_seed(seed, epoch)
    per_shard = num_examples // shard_count
    batches = []
    for pass_index in itertools.count():
        order = np.random.default_rng((data_seed, 0, pass_index)).permutation(num_examples)
        mine = order[shard_index::shard_count][:per_shard]
        for start in range(0, per_shard - batch_size + 1, batch_size):
            if len(batches) == count:
                return batches
            batches.append((pass_index, np.sort(mine[start:start + batch_size])))


def reference_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, epoch: int,
                      count: int, preprocess: Callable[[np.ndarray, np.random.Generator], np.ndarray], *,
                      shard_index: int = 0, shard_count: int = 1) -> list[dict[str, np.ndarray]]:
    """The first ``count`` train batches of epoch ``epoch`` ("image", "label"), with the
    augmentation ``preprocess(raw, rng)`` drawing from the reference generators."""
    data_seed = reference_epoch_seed(seed, epoch)
    generators = {}
    batches = []
    for pass_index, indices in reference_indices(len(labels), batch_size, seed, epoch, count,
                                                 shard_index=shard_index, shard_count=shard_count):
        if pass_index not in generators:
            generators[pass_index] = np.random.default_rng((data_seed, 1, pass_index, shard_index))
        batches.append({"image": preprocess(np.asarray(images[indices]), generators[pass_index]),
                        "label": np.asarray(labels[indices], np.int32)})
    return batches


def assert_batches_equal(actual, expected) -> None:
    """Bit-identical "image" and "label" (dtype and bytes; and all-ones masks) batch by batch."""
    actual = list(actual)
    assert len(actual) == len(expected)
    for index, (got, want) in enumerate(zip(actual, expected)):
        try:
            assert_bit_identical({"image": got["image"], "label": got["label"]}, want)
        except AssertionError as error:
            raise AssertionError(f"batch {index}: {error}") from None
        assert got["mask"].all()

"""One evaluation pass: exact loss / top-1 / top-5 over the eval split (or its first batches).

The eval batches come from the data pipeline padded and masked (``glif_jax.data.build``
with ``train=False``: a last partial batch is zero-padded to the eval batch size and its
padding rows have mask 0, see ``glif_jax.data.batching.with_mask``), so the eval step
compiles once and the padding counts for nothing. A batch of another size, or without a
mask, is refused.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable

import numpy as np

from glif_jax.parallel import DataParallel
from glif_jax.train.metrics import MeanAccumulator

Batch = dict[str, np.ndarray]


def checked_batch(batch: Batch, batch_size: int) -> Batch:
    """``batch`` if it has ``batch_size`` rows and a "mask", else a ValueError."""
    rows = batch["label"].shape[0]
    if rows != batch_size or "mask" not in batch:
        missing = "" if "mask" in batch else " and no \"mask\""
        raise ValueError(
            f"an eval batch has {rows} rows{missing}: eval batches must hold exactly the eval batch "
            f"size {batch_size} with a \"mask\" (pad and mask a last partial batch with "
            "glif_jax.data.batching.with_mask, as the data pipelines do)"
        )
    return batch


def evaluate(
    eval_fn: Callable[[Any, Any], Any],
    state: Any,
    batches: Iterable[Batch],
    *,
    strategy: DataParallel,
    batch_size: int,
    max_batches: int | None = None,
) -> dict[str, float]:
    """Runs the compiled ``eval_fn(state, batch) -> sums`` over ``batches``.

    ``state`` is already placed by ``strategy``; ``batch_size`` is this process's eval
    batch size, which every batch must have (with a "mask"); ``max_batches`` None means
    the whole pass. Returns the averages of ``glif_jax.train.steps.eval_step``'s sums plus
    the example ``count``.
    """
    totals = MeanAccumulator()
    pending = []
    for batch in itertools.islice(batches, max_batches):
        pending.append(eval_fn(state, strategy.put_batch(checked_batch(batch, batch_size))))
    for sums in pending:  # fetch at the end: no host sync between batches
        totals.add(strategy.fetch(sums))
    return totals.result()

"""One evaluation pass: exact loss / top-1 / top-5 over the eval split (or its first batches).

Batches shorter than the eval batch size are padded here with masked rows, so the eval
step compiles once and the padding counts for nothing.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable

import numpy as np

from glif_jax.parallel import DataParallel
from glif_jax.train.metrics import MeanAccumulator

Batch = dict[str, np.ndarray]


def pad_batch(batch: Batch, batch_size: int) -> Batch:
    """``batch`` with "image"/"label"/"mask" padded by zero rows to ``batch_size`` rows.

    A batch without "mask" gets one (ones for its real rows).
    """
    rows = batch["label"].shape[0]
    if rows > batch_size:
        raise ValueError(f"eval batch has {rows} rows, more than the eval batch size {batch_size}")
    mask = np.asarray(batch.get("mask", np.ones(rows, np.float32)), np.float32)
    padded = {"image": batch["image"], "label": batch["label"], "mask": mask}
    if rows == batch_size:
        return padded
    return {
        name: np.concatenate([value, np.zeros((batch_size - rows,) + value.shape[1:], value.dtype)])
        for name, value in padded.items()
    }


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
    batch size; ``max_batches`` None means the whole pass. Returns the averages of
    ``glif_jax.train.steps.eval_step``'s sums plus the example ``count``.
    """
    totals = MeanAccumulator()
    pending = []
    for batch in itertools.islice(batches, max_batches):
        pending.append(eval_fn(state, strategy.put_batch(pad_batch(batch, batch_size))))
    for sums in pending:  # fetch at the end: no host sync between batches
        totals.add(strategy.fetch(sums))
    return totals.result()

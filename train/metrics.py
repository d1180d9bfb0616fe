"""Loss and accuracy on time-averaged logits, and their averaging over batches.

The models return logits already averaged over the T time steps (the paper's tdBN and time-merging conventions, direct
encoding); the loss is the softmax cross-entropy of that average. Everything here that
runs inside a step is pure ``jax.numpy`` in float32, whatever the compute dtype.

Per-example weights ("mask") let an evaluation pad its last partial batch: padded rows
have weight 0 and count for nothing, so the accuracy is exact over the whole split.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy; logits [B, classes], int labels [B] -> [B] float32."""
    return optax.losses.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                                  labels.astype(jnp.int32))


def top_k_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    """[B] float32: 1 where the label is among the k largest logits (k capped at classes).

    Ties rank the lower class index first (as ``argmax`` and a stable sort do), so equal
    logits never count as correct for free: the label's rank is the number of classes
    scoring higher plus the lower-indexed classes scoring the same. A row with a NaN or
    infinite logit is never correct (a diverged model must not score).
    """
    logits = logits.astype(jnp.float32)
    labels = labels.astype(jnp.int32)
    label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
    classes = jnp.arange(logits.shape[-1])
    ahead = (logits > label_logit) | ((logits == label_logit) & (classes[None, :] < labels[:, None]))
    ranked = jnp.sum(ahead, axis=-1) < min(k, logits.shape[-1])
    return (ranked & jnp.all(jnp.isfinite(logits), axis=-1)).astype(jnp.float32)


def batch_sums(logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> dict[str, jax.Array]:
    """Sums over the (masked) batch: loss, top1, top5 and the example count."""
    weights = jnp.ones(labels.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
    return {
        "loss": jnp.sum(cross_entropy(logits, labels) * weights),
        "top1": jnp.sum(top_k_correct(logits, labels, 1) * weights),
        "top5": jnp.sum(top_k_correct(logits, labels, 5) * weights),
        "count": jnp.sum(weights),
    }


class MeanAccumulator:
    """Host-side running sums of per-batch metric sums; ``result`` divides by the count.

    ``add`` takes a dict of sums with a "count" entry (as ``batch_sums`` returns) and
    keeps float64 totals, so the averages are exact over any number of batches.
    """

    def __init__(self) -> None:
        self._totals: dict[str, float] = {}

    def add(self, sums: Mapping[str, Any]) -> None:
        for name, value in sums.items():
            self._totals[name] = self._totals.get(name, 0.0) + float(np.asarray(value, np.float64))

    @property
    def count(self) -> float:
        return self._totals.get("count", 0.0)

    @property
    def totals(self) -> dict[str, float]:
        """The running sums (e.g. to save them with a mid-epoch checkpoint)."""
        return dict(self._totals)

    @classmethod
    def from_totals(cls, totals: Mapping[str, float]) -> "MeanAccumulator":
        accumulator = cls()
        accumulator._totals = {name: float(value) for name, value in totals.items()}
        return accumulator

    def result(self) -> dict[str, float]:
        """Averages of every metric (``count`` itself is returned as the total)."""
        count = self.count
        if count <= 0:
            raise ValueError("no examples were accumulated (empty evaluation split?)")
        return {
            name: (total if name == "count" else total / count)
            for name, total in self._totals.items()
        }

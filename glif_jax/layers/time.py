"""Time merged into batch for stateless layers (the paper's tdBN and time-merging conventions).

Spiking activations are ``[T, B, ...]``. Convolutions, pooling and normalisation hold no
state across time, so they run once on ``[T·B, ...]`` and the result is split back.
"""

from __future__ import annotations

from typing import Callable

import jax


def merge_time(x: jax.Array) -> jax.Array:
    """``[T, B, ...] -> [T·B, ...]`` (time-major: row ``t·B + b`` is step t of sample b)."""
    if x.ndim < 2:
        raise ValueError(f"merge_time expects [T, B, ...] with at least 2 axes, got shape {x.shape}")
    return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def split_time(x: jax.Array, time_steps: int) -> jax.Array:
    """``[T·B, ...] -> [T, B, ...]``; the inverse of :func:`merge_time`."""
    if x.ndim < 1 or time_steps < 1 or x.shape[0] % time_steps:
        raise ValueError(
            f"split_time expects a leading axis divisible by time_steps={time_steps}, got shape {x.shape}")
    return x.reshape((time_steps, x.shape[0] // time_steps) + x.shape[1:])


def time_merged(layer: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """Apply a stateless ``layer`` to ``x [T, B, ...]`` on ``[T·B, ...]``; returns ``[T, B, ...']``."""
    return split_time(layer(merge_time(x)), x.shape[0])

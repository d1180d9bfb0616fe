"""Putting time first on the way in, and averaging it out on the way out (the paper's tdBN and time-merging conventions).

Direct encoding repeats a static image at every time step; event frames already carry
time and only need it moved to the front. The readout averages the classifier output
over time (the loss is cross-entropy on that average).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def repeat_over_time(images: jax.Array, time_steps: int) -> jax.Array:
    """Direct encoding: ``[B, ...] -> [T, B, ...]``, the same input at every step."""
    if time_steps < 1:
        raise ValueError(f"time_steps must be a positive integer, got {time_steps}")
    return jnp.broadcast_to(images[None], (time_steps,) + images.shape)


def frames_time_first(frames: jax.Array) -> jax.Array:
    """Event frames ``[B, T, ...] -> [T, B, ...]``."""
    if frames.ndim < 2:
        raise ValueError(f"frames_time_first expects [B, T, ...], got shape {frames.shape}")
    return jnp.swapaxes(frames, 0, 1)


def mean_over_time(outputs: jax.Array) -> jax.Array:
    """Readout: ``[T, B, ...] -> [B, ...]``, the average over time, in float32."""
    return jnp.mean(outputs.astype(jnp.float32), axis=0)

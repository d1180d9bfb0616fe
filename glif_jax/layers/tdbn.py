"""Threshold-dependent batch normalisation (tdBN), the paper's tdBN and time-merging conventions.

    y = k · V · (x − mean) / sqrt(var + eps) · scale + bias

per channel (the last axis), with statistics over every other axis together — time, batch
and space of a ``[T, B, H, W, C]`` (or time-merged ``[T·B, H, W, C]``) activation.
``V = 0.5`` is a constant (not the neuron's learnable threshold); ``k = 1`` normally and
``k = 1/√2`` on the two normalisations whose outputs are added in a residual block.
Plain batch normalisation is the special case ``k · V = 1`` (see :func:`plain_batch_norm`).

Running statistics follow PyTorch: ``running = (1 − momentum) · running + momentum · batch``
with momentum 0.1, and the running variance is the *unbiased* batch variance
(``n / (n − 1)`` times the biased one that normalises the batch).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

TDBN_THRESHOLD = 0.5
"""V of tdBN (the paper's tdBN and time-merging conventions): the constant the normalised activation is scaled to."""

RESIDUAL_BRANCH_SCALE = 1.0 / math.sqrt(2.0)
"""k on the two normalisations whose outputs are summed in a residual block (the paper's tdBN and time-merging conventions)."""


class TdBatchNorm(nn.Module):
    """tdBN over all leading axes of ``x [..., C]``.

    Attributes:
      k: branch factor; 1, or :data:`RESIDUAL_BRANCH_SCALE` before a residual sum.
      threshold: V; :data:`TDBN_THRESHOLD` for tdBN, 1.0 (with k = 1) for plain BatchNorm.
      momentum: PyTorch-convention update factor of the running statistics.
      epsilon: added to the variance.
      use_running_average: eval mode if True (may instead be given at call time).
      axis_name: mapped axis (``pmap``/``shard_map``) over which batch statistics are
        averaged, so that data-parallel training normalises with global statistics;
        None for single-device (or ``jit``-sharded) use.
      dtype: dtype of the output (None: that of ``x``); statistics are float32.
      param_dtype: dtype of ``scale`` and ``bias``.
    """

    k: float = 1.0
    threshold: float = TDBN_THRESHOLD
    momentum: float = 0.1
    epsilon: float = 1e-5
    use_running_average: bool | None = None
    axis_name: str | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        """Normalise ``x [..., C]``; returns the same shape."""
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average)
        if x.ndim < 2:
            raise ValueError(f"TdBatchNorm expects inputs [..., C] with at least 2 axes, got shape {x.shape}")
        channels = x.shape[-1]
        reduction_axes = tuple(range(x.ndim - 1))
        running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((channels,), jnp.float32))
        running_var = self.variable("batch_stats", "var", lambda: jnp.ones((channels,), jnp.float32))
        scale = self.param("scale", nn.initializers.ones, (channels,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (channels,), self.param_dtype)

        x32 = x.astype(jnp.float32)
        if use_running_average:
            mean, var = running_mean.value, running_var.value
        else:
            mean, var = self._batch_statistics(x32, reduction_axes)
            if not self.is_initializing():
                count = math.prod(x.shape[:-1]) * self._device_count()
                unbiased_var = var * (count / max(count - 1, 1))
                running_mean.value = (1 - self.momentum) * running_mean.value + self.momentum * mean
                running_var.value = (1 - self.momentum) * running_var.value + self.momentum * unbiased_var

        multiplier = self.k * self.threshold * jax.lax.rsqrt(var + self.epsilon) * scale.astype(jnp.float32)
        y = (x32 - mean) * multiplier + bias.astype(jnp.float32)
        return y.astype(self.dtype or x.dtype)

    def _batch_statistics(self, x32: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
        """Per-channel mean and biased variance (two-pass), averaged across ``axis_name``."""
        mean = jnp.mean(x32, axis=axes)
        if self.axis_name is not None:
            mean = jax.lax.pmean(mean, self.axis_name)
        var = jnp.mean(jnp.square(x32 - mean), axis=axes)
        if self.axis_name is not None:
            var = jax.lax.pmean(var, self.axis_name)
        return mean, var

    def _device_count(self) -> int:
        """Number of devices sharing the statistics (1 without ``axis_name``)."""
        if self.axis_name is None:
            return 1
        return jax.lax.axis_size(self.axis_name)


def plain_batch_norm(**kwargs: Any) -> TdBatchNorm:
    """Ordinary BatchNorm (k · V = 1) with the same statistics and running-stat convention."""
    return TdBatchNorm(k=1.0, threshold=1.0, **kwargs)

"""One generic spiking network, built from a :class:`NetworkSpec` (the paper's tdBN and time-merging conventions).

    x ─ encode ─> [T, B, H, W, C] ─ stem ─ body ─ reduce ─> [T, B, F] ─ head ─> [T, B, classes]
      ─ mean over time ─> logits [B, classes] (float32)

Static images are repeated over time (direct encoding); event frames ``[B, T, ...]`` only
have time moved to the front. Every layer comes from one :class:`LayerSettings`.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from glif_jax.layers import frames_time_first, mean_over_time, repeat_over_time, time_merged
from glif_jax.models.blocks import RESIDUAL_BLOCKS, ConvNormNeuron, SEWBlock, rematerialised
from glif_jax.models.description import AvgPool, ConvUnit, NetworkSpec, Stage
from glif_jax.models.layer_settings import LayerSettings
from glif_jax.neurons import NeuronConfig


class SpikingNetwork(nn.Module):
    """A network of the paper's architectures made from its description.

    Attributes:
      spec: the architecture.
      num_classes: width of the classifier output.
      time_steps: T; event frames must carry exactly this many steps.
      neuron, channel_wise, neuron_init: the GLIF layers' kind, granularity and initial values
        (a preset of ``glif_jax.layers.PRESETS`` or explicit values; ``config.model.init``).
      dtype: compute dtype (e.g. ``jnp.bfloat16``); parameters and logits stay float32.
      bn_axis_name: mapped axis over which BN batch statistics are averaged (data parallel).
      remat: recompute each block's normalisations and GLIF layers in the backward pass
        instead of keeping their outputs (:func:`~glif_jax.models.blocks.rematerialised`):
        the same numbers, less training memory, provided XLA schedules for memory (on a CPU
        its default scheduler computes the copies early and keeps them: ``glif-train`` sets
        ``--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED``, see
        ``train/runtime.py``). The configs turn it on; off by default here.

    Call: ``module.apply(variables, x, train, mutable=["batch_stats"] if train else False)``
    with ``x`` static images ``[B, H, W, C]`` or event frames ``[B, T, H, W, C]`` (see
    ``spec.input``); returns time-averaged logits ``[B, num_classes]`` float32.
    """

    spec: NetworkSpec
    num_classes: int
    time_steps: int
    neuron: NeuronConfig = NeuronConfig()
    channel_wise: bool = True
    neuron_init: str | Mapping[str, Any] = "cifar"
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None
    remat: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        settings = LayerSettings(neuron=self.neuron, channel_wise=self.channel_wise, neuron_init=self.neuron_init,
                                 norm=self.spec.norm, dtype=self.dtype, bn_axis_name=self.bn_axis_name)
        x = self._encode(x)
        x = self._block(ConvNormNeuron)(self.spec.stem, settings, name="stem")(x, train)
        x = self._body(x, settings, train)
        x = self._reduce(x)
        for index, width in enumerate(self.spec.head.widths(self.num_classes), start=1):
            x = settings.dense(width, self.spec.head.bias, name=f"head{index}")(x)
        return mean_over_time(x)

    def _encode(self, x: jax.Array) -> jax.Array:
        """Validate the input and put time first: ``[T, B, H, W, C]`` in the compute dtype."""
        self._check_input(x)
        if self.spec.input.kind == "frames":
            return frames_time_first(x).astype(self.dtype)
        return repeat_over_time(x.astype(self.dtype), self.time_steps)

    def _check_input(self, x: jax.Array) -> None:
        expected = self.spec.input
        what = "event frames" if expected.kind == "frames" else "static images (NHWC)"
        shape = expected.expected_shape(self.time_steps)
        problem = None
        rank = 5 if expected.kind == "frames" else 4
        if x.ndim != rank:
            problem = f"rank {x.ndim}"
        elif x.shape[-1] != expected.channels:
            problem = f"{x.shape[-1]} channels"
        elif expected.kind == "frames" and x.shape[1] != self.time_steps:
            problem = f"{x.shape[1]} time steps"
        elif expected.size is not None and tuple(x.shape[-3:-1]) != tuple(expected.size):
            problem = f"spatial size {tuple(x.shape[-3:-1])}"
        if problem:
            raise ValueError(f"model {self.spec.name!r} expects {what} of shape {shape}; "
                             f"got shape {tuple(x.shape)} ({problem})")

    def _body(self, x: jax.Array, settings: LayerSettings, train: bool) -> jax.Array:
        """Run the body items in order; names: ``conv{i}``, ``stage{i}_block{j}`` (1-based)."""
        conv_count = stage_count = 0
        for item in self.spec.body:
            if isinstance(item, ConvUnit):
                conv_count += 1
                x = self._block(ConvNormNeuron)(item, settings, name=f"conv{conv_count}")(x, train)
            elif isinstance(item, Stage):
                stage_count += 1
                for block_index in range(item.depth):
                    name = f"stage{stage_count}_block{block_index + 1}"
                    if item.block == "sew":
                        block = self._block(SEWBlock)(item.features, item.connection, settings, name=name)
                    else:
                        stride = item.stride if block_index == 0 else 1
                        block = self._block(RESIDUAL_BLOCKS[item.block])(item.features, stride, settings, name=name)
                    x = block(x, train)
            elif isinstance(item, AvgPool):
                window = (item.window, item.window)
                x = time_merged(lambda merged: nn.avg_pool(merged, window, strides=window), x)
            else:
                raise TypeError(f"{self.spec.name}: unknown body item {item!r}")
        return x

    def _block(self, block: type[nn.Module]) -> type[nn.Module]:
        return rematerialised(block) if self.remat else block

    def _reduce(self, x: jax.Array) -> jax.Array:
        """``[T, B, H, W, C] -> [T, B, F]``: global average over space, or flatten."""
        if self.spec.reduction == "global_average":
            return jnp.mean(x, axis=(2, 3))
        return x.reshape(x.shape[:2] + (-1,))

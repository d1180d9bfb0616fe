"""How every layer of a network is made: neuron, normalisation, weight init, dtype (the paper's architectures).

One :class:`LayerSettings` travels through the builder and the blocks, so the choices that
are the same for every layer of a model (neuron kind, channel-wise or layer-wise, neuron
initialisation, tdBN or plain BN, compute dtype, the data-parallel axis of BN statistics)
are made in one place, and so is the weight initialisation of the paper's architectures:
convs Kaiming-normal (fan_out, ReLU gain, untruncated), BN weight 1 / bias 0,
linear weights Normal(0, 0.01), biases 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Mapping

import flax.linen as nn
import jax.numpy as jnp

from glif_jax.layers import SpikingLayer, TdBatchNorm, plain_batch_norm
from glif_jax.neurons import NeuronConfig

CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")   # torch kaiming_normal_(fan_out, relu)
LINEAR_INIT = nn.initializers.normal(stddev=0.01)
BIAS_INIT = nn.initializers.zeros


@dataclasses.dataclass(frozen=True)
class LayerSettings:
    """Per-model layer choices; the methods build one layer each (call them inside ``nn.compact``).

    neuron: the spiking layers' neuron and computation (kind, options, gate mode, surrogate, ...).
    channel_wise: one value per channel (True, the paper's "CW") or per layer.
    neuron_init: the neurons' initial values: a preset of ``glif_jax.layers.PRESETS`` or explicit values.
    norm: "tdbn" (the paper's tdBN and time-merging conventions) or "batchnorm" (plain, k · V = 1).
    dtype: compute dtype of convs, BN outputs and linears (parameters stay float32).
    bn_axis_name: mapped axis over which batch statistics are averaged (data parallel).
    """

    neuron: NeuronConfig = NeuronConfig()
    channel_wise: bool = True
    neuron_init: str | Mapping[str, Any] = "cifar"
    norm: Literal["tdbn", "batchnorm"] = "tdbn"
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    def conv(self, features: int, kernel: int, stride: int = 1, padding: int | None = None,
             name: str | None = None) -> nn.Conv:
        """Bias-free 2-D convolution on ``[N, H, W, C]``; padding defaults to ``kernel // 2``."""
        pad = kernel // 2 if padding is None else padding
        return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                       use_bias=False, kernel_init=CONV_INIT, dtype=self.dtype, param_dtype=jnp.float32,
                       name=name)

    def batch_norm(self, k: float = 1.0, name: str | None = None) -> TdBatchNorm:
        """tdBN with branch factor ``k`` (or plain BN, which takes no k)."""
        options = dict(axis_name=self.bn_axis_name, dtype=self.dtype, name=name)
        if self.norm == "batchnorm":
            if k != 1.0:
                raise ValueError("plain BatchNorm has no residual factor k; use norm='tdbn'")
            return plain_batch_norm(**options)
        return TdBatchNorm(k=k, **options)

    def spiking_neuron(self, name: str | None = None) -> SpikingLayer:
        """A spiking layer of the model's neuron on ``[T, ..., C]``."""
        return SpikingLayer(neuron=self.neuron, channel_wise=self.channel_wise, neuron_init=self.neuron_init,
                    name=name)

    def dense(self, features: int, use_bias: bool = False, name: str | None = None) -> nn.Dense:
        """Linear layer on the last axis, weights Normal(0, 0.01)."""
        return nn.Dense(features, use_bias=use_bias, kernel_init=LINEAR_INIT, bias_init=BIAS_INIT,
                        dtype=self.dtype, param_dtype=jnp.float32, name=name)

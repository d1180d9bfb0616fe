"""The building blocks of the paper's architectures, each defined once. Activations are ``[T, B, H, W, C]``.

- :class:`ConvNorm`: conv → BN (time merged into batch for the conv).
- :class:`ConvNormNeuron`: conv → BN → GLIF (a stem, a CIFARNet layer, half a SEW block).
- :class:`ResidualShortcut`: BN(k=1/√2), or conv1x1(s) → BN(k=1/√2) when the shape changes.
- :class:`BasicBlock`: GLIF(body + shortcut), body = conv3x3(s) → BN → GLIF → conv3x3 → BN(k=1/√2).
- :class:`MembraneShortcutBlock`: body + shortcut, body = GLIF → conv3x3(s) → BN → GLIF → conv3x3 → BN(k=1/√2).
- :class:`SEWBlock`: two conv units joined to the input by ADD / AND / IAND.
"""

from __future__ import annotations

import flax.linen as nn
import jax
from jax.ad_checkpoint import checkpoint_name

from glif_jax.layers import RESIDUAL_BRANCH_SCALE, time_merged
from glif_jax.models.description import ConvUnit
from glif_jax.models.layer_settings import LayerSettings


CONV_OUTPUT = "conv_output"
"""Name of every convolution's output (``jax.ad_checkpoint.checkpoint_name``): what a
rematerialised block keeps for the backward pass (see :func:`rematerialised`)."""


class ConvNorm(nn.Module):
    """conv(kernel, stride, padding) → BN(k) on ``[T, B, H, W, Cin] -> [T, B, H', W', features]``."""

    features: int
    kernel: int
    stride: int
    settings: LayerSettings
    padding: int | None = None
    k: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv = self.settings.conv(self.features, self.kernel, self.stride, self.padding, name="conv")
        convolved = checkpoint_name(time_merged(conv, x), CONV_OUTPUT)
        return self.settings.batch_norm(self.k, name="norm")(convolved, use_running_average=not train)


class ConvNormNeuron(nn.Module):
    """A :class:`ConvUnit`: conv → BN → GLIF, ``[T, B, H, W, Cin] -> [T, B, H', W', features]`` spikes."""

    unit: ConvUnit
    settings: LayerSettings

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        unit = self.unit
        x = ConvNorm(unit.features, unit.kernel, unit.stride, self.settings, unit.pad, name="conv_norm")(x, train)
        return self.settings.spiking_neuron(name="neuron")(x)


class ResidualShortcut(nn.Module):
    """The shortcut branch of a residual block: BN(k=1/√2) alone when the input already has
    ``features`` channels and ``stride`` is 1, else conv1x1(stride) → BN(k=1/√2)."""

    features: int
    stride: int
    settings: LayerSettings

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if x.shape[-1] == self.features and self.stride == 1:
            return self.settings.batch_norm(RESIDUAL_BRANCH_SCALE, name="norm")(x, use_running_average=not train)
        return ConvNorm(self.features, 1, self.stride, self.settings, padding=0, k=RESIDUAL_BRANCH_SCALE,
                        name="conv_norm")(x, train)


class BasicBlock(nn.Module):
    """Spiking BasicBlock: ``GLIF(body(x) + shortcut(x))``; output spikes ``[T, B, H/s, W/s, features]``."""

    features: int
    stride: int
    settings: LayerSettings

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        body = ConvNorm(self.features, 3, self.stride, self.settings, name="conv_norm1")(x, train)
        body = self.settings.spiking_neuron(name="neuron1")(body)
        body = ConvNorm(self.features, 3, 1, self.settings, k=RESIDUAL_BRANCH_SCALE, name="conv_norm2")(body, train)
        shortcut = ResidualShortcut(self.features, self.stride, self.settings, name="shortcut")(x, train)
        return self.settings.spiking_neuron(name="neuron_out")(body + shortcut)


class MembraneShortcutBlock(nn.Module):
    """MS block: ``body(x) + shortcut(x)``, neurons before the convs and none after the sum,
    so the output ``[T, B, H/s, W/s, features]`` is real-valued (membrane-like)."""

    features: int
    stride: int
    settings: LayerSettings

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        body = self.settings.spiking_neuron(name="neuron1")(x)
        body = ConvNorm(self.features, 3, self.stride, self.settings, name="conv_norm1")(body, train)
        body = self.settings.spiking_neuron(name="neuron2")(body)
        body = ConvNorm(self.features, 3, 1, self.settings, k=RESIDUAL_BRANCH_SCALE, name="conv_norm2")(body, train)
        shortcut = ResidualShortcut(self.features, self.stride, self.settings, name="shortcut")(x, train)
        return body + shortcut


class SEWBlock(nn.Module):
    """Spike-element-wise block: ``connect(body(x), x)`` with body = two conv units of ``features``
    channels (conv3x3 → BN → GLIF, twice), and connect ADD ``a + x``, AND ``a · x``,
    IAND ``(1 − a) · x``. Keeps the shape ``[T, B, H, W, features]``."""

    features: int
    connection: str
    settings: LayerSettings

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if x.shape[-1] != self.features:
            raise ValueError(f"SEWBlock({self.features}) got {x.shape[-1]} input channels; "
                             "put a ConvUnit before it to change the width")
        body = ConvNormNeuron(ConvUnit(self.features), self.settings, name="unit1")(x, train)
        body = ConvNormNeuron(ConvUnit(self.features), self.settings, name="unit2")(body, train)
        if self.connection == "ADD":
            return body + x
        if self.connection == "AND":
            return body * x
        if self.connection == "IAND":
            return (1 - body) * x
        raise ValueError(f"SEWBlock.connection: expected 'ADD', 'AND' or 'IAND', got {self.connection!r}")


RESIDUAL_BLOCKS = {"basic": BasicBlock, "ms": MembraneShortcutBlock}
"""Block kinds with a strided first block and a :class:`ResidualShortcut`."""


def rematerialised(block: type[nn.Module]) -> type[nn.Module]:
    """``block`` (called as ``block(...)(x, train)``) that keeps only its input and its
    convolutions' outputs for the backward pass, and computes its normalisations and GLIF
    layers again there (``flax.linen.remat`` with a ``save_only_these_names`` policy).

    The same results; less memory held from the forward to the backward pass (the tdBN
    outputs and the membrane potentials of every GLIF layer: 0.7 GiB, 40 % of the compiled
    step's temporary memory, for ResNet-18 at T = 4, batch 16) for a second pass over those
    cheap layers (about 5 % more step time on a CPU).
    """
    policy = jax.checkpoint_policies.save_only_these_names(CONV_OUTPUT)
    return nn.remat(block, policy=policy, static_argnums=(2,))   # (self, x, train): train is a Python bool

"""One spiking layer for any neuron: owns the neuron's stored parameters, initialises them, runs it over time."""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from glif_jax.errors import OptionError
from glif_jax.neurons import loop, registry, scopes
from glif_jax.neurons.config import NeuronConfig
from glif_jax.neurons.glif import PRESETS
from glif_jax.neurons.interface import Neuron, Uniform, logit

__all__ = ["GLIF", "PRESETS", "SpikingLayer", "initial_values", "logit", "neuron_values", "preset_names"]


def preset_names() -> tuple[str, ...]:
    """Every preset name some registered neuron declares (``"cifar"``, ``"imagenet"``, ``"dvs"``, ...)."""
    names: dict[str, None] = {}
    for name in registry.names():
        names.update(dict.fromkeys(registry.get(name).presets))
    return tuple(names)


def initial_values(neuron_init: str | Mapping[str, float], neuron: Any = None) -> dict[str, float | Uniform]:
    """Each parameter's initial value (after the constraint, or a raw :class:`~glif_jax.neurons.Uniform`).

    neuron_init: a preset name (the GLIF paper's ``"cifar"``, ``"imagenet"``, ``"imagenet_t6"``,
      ``"dvs"``: :data:`PRESETS`; a neuron without that preset keeps its declared values) or a
      mapping of the values of every parameter with a constant initial value (GLIF: its five
      primitives; its gates start uniformly distributed).
    neuron: a Neuron, :class:`~glif_jax.neurons.NeuronConfig` or name; default GLIF.
    """
    resolved = scopes.resolve(neuron) or registry.get("glif")
    if isinstance(neuron_init, str):
        known = (*preset_names(), *resolved.presets)
        if neuron_init not in known:
            raise OptionError("neuron_init", f"unknown preset {neuron_init!r}; expected one of {sorted(known)} "
                              "or a mapping")
        return resolved.initial_values(neuron_init)
    if hasattr(neuron_init, "to_dict"):   # a ConfigDict
        neuron_init = neuron_init.to_dict()
    if not isinstance(neuron_init, Mapping):
        raise OptionError("neuron_init", f"expected a preset name or a mapping, got {neuron_init!r}")
    for name, value in neuron_init.items():
        if name in resolved.param_names:
            try:
                resolved.parameter(name).raw_value(value)
            except ValueError:
                constraint = resolved.parameter(name).constrain
                raise OptionError(f"neuron_init.{name}", f"values live in ({constraint.low:g}, {constraint.high:g}) "
                                  f"(the {constraint.name} of the stored value), got {value!r}") from None
    try:
        return resolved.initial_values(neuron_init)
    except ValueError as error:
        raise OptionError("neuron_init", str(error)) from None


class SpikingLayer(nn.Module):
    """Spiking neurons over time: ``[T, ..., C]`` synaptic input -> ``[T, ..., C]`` spikes.

    Attributes:
      neuron: which neuron and how it computes (:class:`glif_jax.neurons.NeuronConfig`; the
        default is the paper's GLIF).
      channel_wise: one value per channel (the paper's default) or one per layer, for the
        neuron's per-channel parameters.
      neuron_init: the parameters' initial values, a preset (``"cifar"``, ``"imagenet"``,
        ``"imagenet_t6"``, ``"dvs"``) or a mapping of values (:func:`initial_values`).
      gate_init_range: ``r`` of a ``U[-r, r)`` initialisation of the neuron's gate parameters
        (GLIF: 0.2); None keeps the neuron's declared initialisation.
      init_values: the earlier name of ``neuron_init``; still accepted, with a ``DeprecationWarning``.

    The stored parameters are the neuron's raw parameters under its names (GLIF: the logits
    ``alpha, beta, gamma, tau, lam, v_th, v_re, cond``; ``cond`` is ``[T, C]``, ``[T]``
    layer-wise). When the ``"spike_stats"`` collection is mutable, the layer stores ``rates``:
    the mean spike per time step and channel, ``[T, C]``.
    """

    neuron: NeuronConfig = NeuronConfig()
    channel_wise: bool = True
    neuron_init: Any = "cifar"
    gate_init_range: float | None = None
    init_values: Any = None

    def __post_init__(self):
        if self.init_values is not None:
            if self.neuron_init != "cifar" and self.neuron_init != self.init_values:
                raise ValueError("SpikingLayer: give neuron_init only (init_values is its deprecated name)")
            warnings.warn("init_values=... is deprecated; the attribute is now called neuron_init",
                          DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "neuron_init", self.init_values)  # before Flax freezes the module
            object.__setattr__(self, "init_values", None)
        super().__post_init__()

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        neuron = self.neuron.neuron
        if inputs.ndim < 2:
            raise ValueError(f"{self.name or 'SpikingLayer'}: expected inputs [T, ..., C], got shape {inputs.shape}")
        time_steps, channels = inputs.shape[0], inputs.shape[-1]
        values = initial_values(self.neuron_init, neuron)
        per_channel = channels if self.channel_wise else None
        self._check_stored_shapes(neuron, time_steps, per_channel, inputs.shape)
        params = {}
        for parameter in neuron.parameters:
            init = values[parameter.name]
            if self.gate_init_range is not None and parameter.group == "gates" and isinstance(init, Uniform):
                init = Uniform(-self.gate_init_range, self.gate_init_range)
            params[parameter.name] = self.param(parameter.name, parameter.initializer(init),
                                                parameter.shape(per_channel, time_steps))
        spikes = loop.run(params, inputs, self.neuron)
        if self.is_mutable_collection("spike_stats") and not self.is_initializing():
            rates = jnp.mean(spikes.astype(jnp.float32), axis=tuple(range(1, spikes.ndim - 1)))
            self.sow("spike_stats", "rates", rates, init_fn=lambda: None, reduce_fn=lambda _, new: new)
        return spikes

    def _check_stored_shapes(self, neuron: Neuron, time_steps: int, channels: int | None,
                             input_shape: tuple[int, ...]) -> None:
        """Applying to inputs of another T or C than at init is a clear error, not a Flax shape error."""
        for parameter in neuron.parameters:
            if not self.has_variable("params", parameter.name):
                continue
            stored = self.get_variable("params", parameter.name).shape
            expected = parameter.shape(channels, time_steps)
            if stored != expected:
                layer = self.name or "SpikingLayer"
                stored_t = f"T={stored[0]}, " if parameter.per_time_step and stored else ""
                raise ValueError(
                    f"{layer}: inputs {input_shape} do not fit the layer's parameters ({parameter.name} is {stored}); "
                    f"expected inputs [{stored_t}..., C] with the time length and channels it was initialised with"
                )


GLIF = SpikingLayer
"""The spiking layer under the paper's name (it runs GLIF unless ``neuron`` names another neuron)."""


def neuron_values(params: Mapping[str, Any], prefix: str = "", neuron: Any = None
                  ) -> dict[str, dict[str, jax.Array]]:
    """Constrained values (what the neuron uses) of every neuron layer in a parameter tree.

    Returns ``{"stage1/block0/neuron1": {"alpha": [C], ..., "cond": [T, C]}, ...}`` in the
    tree's order, with paths joined by ``/`` (after ``prefix``; ``"glif"`` for a tree that is
    one layer's parameters). The layers are those of :func:`glif_jax.neurons.neuron_scopes`
    (of ``neuron`` if given, else of any registered neuron).
    """
    return {"/".join(part for part in (prefix, path) if part) or "glif": scopes.constrain(layer, found)
            for path, (layer, found) in scopes.find(params, neuron).items()}

"""The GLIF layer as a Flax module: owns the neuron's logits, initialises them (the GLIF paper's neuron equations)."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from glif_jax.errors import OptionError
from glif_jax.neuron import GATE_NAMES, NeuronConfig, constrained, glif, neuron_scopes

# Primitive values after the sigmoid (the GLIF paper's neuron equations, "Initialisation"). The
# paper's ImageNet runs start cond at 0.5 with T = 4 and at 0.9 with T = 6: presets "imagenet" and
# "imagenet_t6", between which the ImageNet recipe (glif_jax.configs.base.imagenet) chooses.
PRESETS: dict[str, dict[str, float]] = {
    "cifar": {"v_th": 0.5, "v_re": 0.5, "cond": 0.5, "tau": 0.25, "lam": 0.0625},
    "imagenet": {"v_th": 0.5, "v_re": 0.5, "cond": 0.5, "tau": 0.25, "lam": 0.0625},
    "imagenet_t6": {"v_th": 0.5, "v_re": 0.5, "cond": 0.9, "tau": 0.25, "lam": 0.0625},
    "dvs": {"v_th": 0.99999, "v_re": 0.99999, "cond": 0.9, "tau": 0.5, "lam": 0.03125},
}
PRIMITIVE_INIT_NAMES = ("tau", "lam", "v_th", "v_re", "cond")


def initial_values(neuron_init: str | Mapping[str, float]) -> dict[str, float]:
    """Primitive values (in (0, 1)) for a preset name (:data:`PRESETS`) or an explicit mapping of all five."""
    if isinstance(neuron_init, str):
        if neuron_init not in PRESETS:
            raise OptionError("neuron_init", f"unknown preset {neuron_init!r}; expected one of {sorted(PRESETS)} "
                              "or a mapping")
        return dict(PRESETS[neuron_init])
    if hasattr(neuron_init, "to_dict"):   # a ConfigDict
        neuron_init = neuron_init.to_dict()
    if not isinstance(neuron_init, Mapping):
        raise OptionError("neuron_init", f"expected a preset name or a mapping, got {neuron_init!r}")
    missing = [name for name in PRIMITIVE_INIT_NAMES if name not in neuron_init]
    unknown = [name for name in neuron_init if name not in PRIMITIVE_INIT_NAMES]
    if missing or unknown:
        raise OptionError("neuron_init", f"expected values for {PRIMITIVE_INIT_NAMES}; "
                          f"missing {missing}, unknown {unknown}")
    for name, value in neuron_init.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
            raise OptionError(f"neuron_init.{name}", f"values live in (0, 1) (they are sigmoids), got {value!r}")
    return {name: float(neuron_init[name]) for name in PRIMITIVE_INIT_NAMES}


def logit(value: float) -> float:
    """Inverse of the sigmoid: the stored parameter for a value in (0, 1)."""
    return math.log(value / (1 - value))


def _constant_logit(value: float):
    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.full(shape, logit(value), dtype)

    return init


def _uniform_logit(radius: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -radius, radius)

    return init


class GLIF(nn.Module):
    """GLIF neurons over time: ``[T, ..., C]`` synaptic input -> ``[T, ..., C]`` spikes.

    Attributes:
      neuron: kind, gate mode, surrogate, ... (:class:`glif_jax.neuron.NeuronConfig`).
      channel_wise: one value per channel (the paper's default) or one per layer.
      neuron_init: primitive initial values, a preset of :data:`PRESETS` (``"cifar"``,
        ``"imagenet"``, ``"imagenet_t6"``, ``"dvs"``) or a mapping of ``tau, lam, v_th, v_re, cond``.
      gate_init_range: gate logits start ~ U[-range, range).
      init_values: the earlier name of ``neuron_init``; still accepted, with a ``DeprecationWarning``.

    Parameters are logits named ``alpha, beta, gamma`` (gates) and ``tau, lam, v_th, v_re,
    cond`` (primitives); ``cond`` is ``[T, C]`` (``[T]`` layer-wise). When the
    ``"spike_stats"`` collection is mutable, the layer stores ``rates``: the mean spike per
    time step and channel, ``[T, C]``.
    """

    neuron: NeuronConfig = NeuronConfig()
    channel_wise: bool = True
    neuron_init: Any = "cifar"
    gate_init_range: float = 0.2
    init_values: Any = None

    def __post_init__(self):
        if self.init_values is not None:
            if self.neuron_init != "cifar" and self.neuron_init != self.init_values:
                raise ValueError("GLIF: give neuron_init only (init_values is its deprecated name)")
            warnings.warn("GLIF(init_values=...) is deprecated; the attribute is now called neuron_init",
                          DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "neuron_init", self.init_values)  # before Flax freezes the module
            object.__setattr__(self, "init_values", None)
        super().__post_init__()

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        if inputs.ndim < 2:
            raise ValueError(f"{self.name or 'GLIF'}: expected inputs [T, ..., C], got shape {inputs.shape}")
        time_steps, channels = inputs.shape[0], inputs.shape[-1]
        values = initial_values(self.neuron_init)
        shape = (channels,) if self.channel_wise else ()
        self._check_stored_shapes(time_steps, shape, inputs.shape)
        params = {}
        for name in self.neuron.param_names:
            if name in GATE_NAMES:
                params[name] = self.param(name, _uniform_logit(self.gate_init_range), shape)
            elif name == "cond":
                params[name] = self.param(name, _constant_logit(values[name]), (time_steps, *shape))
            else:
                params[name] = self.param(name, _constant_logit(values[name]), shape)
        spikes = glif(params, inputs, self.neuron)
        if self.is_mutable_collection("spike_stats") and not self.is_initializing():
            rates = jnp.mean(spikes.astype(jnp.float32), axis=tuple(range(1, spikes.ndim - 1)))
            self.sow("spike_stats", "rates", rates, init_fn=lambda: None, reduce_fn=lambda _, new: new)
        return spikes

    def _check_stored_shapes(self, time_steps: int, shape: tuple[int, ...], input_shape: tuple[int, ...]) -> None:
        """Applying to inputs of another T or C than at init is a clear error, not a Flax shape error."""
        for name in self.neuron.param_names:
            if not self.has_variable("params", name):
                continue
            stored = self.get_variable("params", name).shape
            expected = (time_steps, *shape) if name == "cond" else shape
            if stored != expected:
                layer = self.name or "GLIF"
                stored_t = f"T={stored[0]}, " if name == "cond" else ""
                raise ValueError(
                    f"{layer}: inputs {input_shape} do not fit the layer's parameters ({name} is {stored}); "
                    f"expected inputs [{stored_t}..., C] with the time length and channels it was initialised with"
                )


def neuron_values(params: Mapping[str, Any], prefix: str = "") -> dict[str, dict[str, jax.Array]]:
    """Constrained values (after the sigmoid) of every GLIF layer in a parameter tree.

    Returns ``{"stage1/block0/glif1": {"alpha": [C], ..., "cond": [T, C]}, ...}`` in the
    tree's order, with paths joined by ``/`` (after ``prefix``; ``"glif"`` for a tree that is
    one layer's parameters). The layers are those of :func:`glif_jax.neuron.neuron_scopes`, the
    same walk as :func:`glif_jax.neuron.constrained_tree`, which keeps the tree's structure instead.
    """
    return {"/".join(part for part in (prefix, path) if part) or "glif": constrained(layer)
            for path, layer in neuron_scopes(params).items()}

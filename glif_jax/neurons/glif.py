"""GLIF (the GLIF paper's neuron equations) and GLIF_f, its coarsely fused ablation, as neurons.

One step, for coefficients computed once from the constrained parameters (:func:`glif_coefficients`)::

    membrane = decay * membrane_prev * (1 - reset_gate * spike_prev) - leak
               + input_gain[t] * input[t] - soft_reset * spike_prev
    spike    = H(membrane - threshold)

For GLIF these are ``decay = 1 - a(1 - tau)``, ``reset_gate = g``, ``leak = (1 - a) lam``,
``input_gain = 1 - b(1 - cond)``, ``soft_reset = (1 - g) v_re``, ``threshold = v_th``: the
paper's leak, integration and reset terms, with the reset of a spike applied at the next step.
GLIF_f and LIF (:mod:`glif_jax.neurons.lif`) are the same recurrence with other coefficients,
so all three share the fast paths here: the compiled CPU kernel (:mod:`glif_jax.cpu_kernel`)
when compiling for the CPU, and an XLA scan with a hand-written backward pass through time
(:mod:`glif_jax.xla_scan`) elsewhere.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from glif_jax import cpu_kernel, xla_scan
from glif_jax.neurons.interface import MembraneState, Neuron, Parameter, Uniform
from glif_jax.neurons.loop import spike, unroll_for
from glif_jax.neurons.registry import built_in

GATE_NAMES = ("alpha", "beta", "gamma")
PRIMITIVE_NAMES = ("tau", "lam", "v_th", "v_re", "cond")
GATE_INIT_RANGE = 0.2
"""Gate logits start ~ U[-0.2, 0.2) (the paper's stated range; values in [0.4502, 0.5498))."""

# Primitive values after the sigmoid (the GLIF paper's neuron equations, "Initialisation"). The
# paper's ImageNet runs start cond at 0.5 with T = 4 and at 0.9 with T = 6: presets "imagenet" and
# "imagenet_t6", between which the ImageNet recipe (glif_jax.configs.base.imagenet) chooses.
PRESETS: dict[str, dict[str, float]] = {
    "cifar": {"v_th": 0.5, "v_re": 0.5, "cond": 0.5, "tau": 0.25, "lam": 0.0625},
    "imagenet": {"v_th": 0.5, "v_re": 0.5, "cond": 0.5, "tau": 0.25, "lam": 0.0625},
    "imagenet_t6": {"v_th": 0.5, "v_re": 0.5, "cond": 0.9, "tau": 0.25, "lam": 0.0625},
    "dvs": {"v_th": 0.99999, "v_re": 0.99999, "cond": 0.9, "tau": 0.5, "lam": 0.03125},
}


def _gate(name: str, symbol: str, math: str, meaning: str) -> Parameter:
    return Parameter(name, Uniform(-GATE_INIT_RANGE, GATE_INIT_RANGE), group="gates", symbol=symbol, math=math,
                     meaning=meaning)


GATES = (
    _gate("alpha", "α", r"$\alpha$", "leak — exponential (1) vs linear (0)"),
    _gate("beta", "β", r"$\beta$", "integration — conductance-scaled (1) vs plain input (0)"),
    _gate("gamma", "γ", r"$\gamma$", "reset — hard (1) vs soft (0)"),
)
_CIFAR = PRESETS["cifar"]
PRIMITIVES = (
    Parameter("tau", _CIFAR["tau"], symbol="τ_exp", math=r"$\tau_{exp}$", meaning="exponential decay factor"),
    Parameter("lam", _CIFAR["lam"], symbol="τ_lin", math=r"$\tau_{lin}$", meaning="linear decay per time step"),
    Parameter("v_th", _CIFAR["v_th"], symbol="V_th", math=r"$V_{th}$", meaning="firing threshold"),
    Parameter("v_re", _CIFAR["v_re"], symbol="V_re", math=r"$V_{re}$", meaning="soft-reset amount"),
    Parameter("cond", _CIFAR["cond"], per_time_step=True, symbol="g^t", math=r"$g^t$",
              meaning="conductance at time step t"),
)


class Coefficients(NamedTuple):
    """The recurrence's coefficients, each ``[]`` or ``[C]``; ``input_gain`` is ``[]``, ``[T]`` or ``[T, C]``."""

    decay: jax.Array
    reset_gate: jax.Array
    leak: jax.Array
    input_gain: jax.Array
    soft_reset: jax.Array
    threshold: jax.Array

    def membrane_update(self, membrane: jax.Array, spike: jax.Array, input_gain: jax.Array,
                        inputs: jax.Array) -> jax.Array:
        """The GLIF paper's neuron equations: ``L + I - reset`` for one step, in the authors' order of terms.

        ``membrane`` and ``spike`` are the previous step's, ``input_gain`` this step's row of
        :attr:`input_gain` (or all of it when it does not depend on time).
        """
        leak_term = self.decay * membrane * (1 - self.reset_gate * spike) - self.leak
        return leak_term + input_gain * inputs - self.soft_reset * spike

    def per_step_gain(self, time_steps: int) -> jax.Array:
        """:attr:`input_gain` with a leading time axis of ``time_steps`` (``[T]`` or ``[T, C]``)."""
        if self.input_gain.ndim:
            return self.input_gain
        return jnp.broadcast_to(self.input_gain, (time_steps,))

    def gain_at(self, time_step: int | jax.Array) -> jax.Array:
        return self.input_gain[time_step] if self.input_gain.ndim else self.input_gain


def _cond(values: Mapping[str, jax.Array]) -> jax.Array:
    cond = values["cond"]
    if cond.ndim == 1 and any(jnp.ndim(v) for k, v in values.items() if k != "cond"):
        return cond[:, None]  # layer-wise cond [T] beside channel-wise values [C]
    return cond


def glif_coefficients(values: Mapping[str, jax.Array]) -> Coefficients:
    """GLIF's coefficients from its constrained values (gates already hard or soft)."""
    a, b, g = (values[name] for name in GATE_NAMES)
    return Coefficients(decay=1 - a * (1 - values["tau"]), reset_gate=g, leak=(1 - a) * values["lam"],
                        input_gain=1 - b * (1 - _cond(values)), soft_reset=(1 - g) * values["v_re"],
                        threshold=values["v_th"])


def glif_f_coefficients(values: Mapping[str, jax.Array]) -> Coefficients:
    """GLIF_f: ``u = tau u (1 - o) - lam + cond c - v_re o`` (no gates)."""
    one = jnp.ones((), values["tau"].dtype)
    return Coefficients(values["tau"], one, values["lam"], _cond(values), values["v_re"], values["v_th"])


def coefficient_step(coefficients_of: Callable[[Mapping[str, jax.Array]], Coefficients]):
    """A neuron step for a recurrence of :class:`Coefficients`: the state is ``(membrane, spike)``."""

    def step(state: MembraneState, params: Mapping[str, jax.Array], inputs_t: jax.Array,
             time_step: jax.Array) -> tuple[MembraneState, jax.Array]:
        coeffs = coefficients_of(params)
        membrane = coeffs.membrane_update(state.membrane, state.spike, coeffs.gain_at(time_step), inputs_t)
        spikes = spike(membrane - coeffs.threshold)
        return MembraneState(membrane, spikes), spikes

    return step


def coefficient_scan(coefficients_of: Callable[[Mapping[str, jax.Array]], Coefficients]):
    """The fast paths of a recurrence of :class:`Coefficients` (a ``Neuron.fast_scan``)."""

    def fast_scan(values, inputs, initial, config, keep_states):
        coeffs = coefficients_of(values)
        dtype = config.state_dtype_for(inputs.dtype)
        spike_function = config.spike_function

        def finish(spikes, membranes):
            if not keep_states:
                return spikes, None
            return spikes, MembraneState(membranes, spikes.astype(membranes.dtype))

        def xla():
            start = initial if initial is not None else MembraneState(*(jnp.zeros_like(inputs[0], dtype=dtype),) * 2)
            return finish(*xla_scan.scan(coeffs, inputs, tuple(start), spike_function,
                                         unroll_for(config.unroll, inputs.shape[0])))

        def kernel():
            return finish(*cpu_kernel.scan(coeffs, inputs, None if initial is None else tuple(initial),
                                           spike_function, keep_states))

        if config.implementation == "xla":
            return xla()
        if config.implementation == "kernel":
            return kernel()
        if cpu_kernel.why_unsupported(spike_function, inputs.dtype, dtype) is not None:
            cpu_kernel.warn_unavailable()   # only when the kernel is missing
            return xla()
        # "auto": chosen when lowering, so the same function also compiles for GPU and TPU
        return jax.lax.platform_dependent(cpu=kernel, default=xla)

    return fast_scan


def coefficient_neuron(name: str, coefficients_of, parameters, description: str) -> Neuron:
    """A neuron of the :class:`Coefficients` recurrence with the fast paths, GLIF's presets restricted
    to ``parameters``."""
    names = {parameter.name for parameter in parameters}
    presets = {preset: {k: v for k, v in values.items() if k in names} for preset, values in PRESETS.items()}
    return Neuron(name, coefficient_step(coefficients_of), tuple(parameters), presets=presets,
                  fast_scan=coefficient_scan(coefficients_of), description=description)


GLIF = built_in(lambda: coefficient_neuron(
    "glif", glif_coefficients, GATES + PRIMITIVES,
    "GLIF, the gated LIF neuron (Yao et al., NeurIPS 2022): gates a, b, g mix leak, integration and reset"))
GLIF_F = built_in(lambda: coefficient_neuron(
    "glif_f", glif_f_coefficients, PRIMITIVES, "GLIF_f, GLIF's coarsely fused ablation: no gates"))


COEFFICIENTS: dict[Neuron, Callable[[Mapping[str, jax.Array]], Coefficients]] = {
    GLIF: glif_coefficients, GLIF_F: glif_f_coefficients}
"""The built-in neurons that are recurrences of :class:`Coefficients` (LIF adds itself)."""


def coefficients_for(neuron: Neuron, values: Mapping[str, Any]) -> Coefficients:
    """The :class:`Coefficients` of a built-in recurrence neuron (GLIF, GLIF_f, LIF) from its constrained values."""
    if neuron not in COEFFICIENTS:
        raise ValueError(f"neuron {neuron.name!r} is not one of the recurrences of GLIF's coefficients "
                         f"({', '.join(known.name for known in COEFFICIENTS)})")
    return COEFFICIENTS[neuron](values)

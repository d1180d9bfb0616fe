"""The GLIF neuron as pure JAX functions (the GLIF paper's neuron equations). No Flax, no training: import it alone.

Parameters are a mapping of *logits* under the names of :data:`PARAM_NAMES`; every gate and
primitive is ``sigmoid(logit)``. Inputs put time first, channels last: ``[T, ..., C]``.

One step, for effective coefficients computed once from the parameters (:func:`coefficients`)::

    membrane = decay * membrane_prev * (1 - reset_gate * spike_prev) - leak
               + input_gain[t] * input[t] - soft_reset * spike_prev
    spike    = H(membrane - threshold)

For GLIF these are ``decay = 1 - a(1 - tau)``, ``reset_gate = g``, ``leak = (1 - a) lam``,
``input_gain = 1 - b(1 - cond)``, ``soft_reset = (1 - g) v_re``, ``threshold = v_th``, which
is the paper's update term by term; GLIF_f and LIF are the same recurrence with other
coefficients. :func:`glif` runs it over time in the compiled CPU kernel of
:mod:`glif_jax.cpu_kernel` when compiling for the CPU (``implementation="auto"``, the default),
else as an XLA scan with a hand-written backward pass through time (``"fused"``, which keeps
only the membrane of every step), or with autodiff through :func:`jax.lax.scan` of
:func:`glif_step` (``"autodiff"``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from glif_jax import cpu_kernel
from glif_jax import surrogate as surrogate_lib

GATE_NAMES = ("alpha", "beta", "gamma")
PRIMITIVE_NAMES = ("tau", "lam", "v_th", "v_re", "cond")
PARAM_NAMES = GATE_NAMES + PRIMITIVE_NAMES
KIND_PARAM_NAMES = {
    "glif": PARAM_NAMES,
    "glif_f": PRIMITIVE_NAMES,
    "lif": ("tau", "v_th"),
}
GATE_MODES = ("soft", "hard")
IMPLEMENTATIONS = ("auto", "kernel", "fused", "autodiff")

Params = Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class NeuronConfig:
    """How a GLIF layer computes (hashable; safe as a jit-static argument).

    kind: ``"glif"`` (gated, the paper's), ``"glif_f"`` (coarsely fused ablation: no gates),
      or ``"lif"`` (plain LIF with hard reset: ``decay = tau``, no leak, input as is).
    gates: ``"soft"`` (``sigmoid(logit)``) or ``"hard"`` (``1[sigmoid(logit) > 0.5]`` forward,
      straight-through gradient).
    static_gates / static_primitives: stop the gradient to the gates / primitives.
    surrogate, surrogate_width: the spike's surrogate derivative (see :mod:`glif_jax.surrogate`).
    state_dtype: dtype of membrane and spike state; ``None`` means float32 (float64 for
      float64 inputs).
    implementation: ``"fused"`` (an XLA time scan with a hand-written backward through time),
      ``"kernel"`` (the compiled CPU kernel of :mod:`glif_jax.cpu_kernel`: the same numbers,
      several times faster on the CPU; an error where it cannot run), ``"auto"`` (the kernel
      when compiling for the CPU and it supports the neuron, else ``"fused"``), or
      ``"autodiff"`` (autodiff through a scan of :func:`glif_step`; also differentiable twice).
    unroll: ``jax.lax.scan`` unroll factor of the XLA forward time loop (``True`` unrolls it
      whole); ``None`` picks by length: whole for ``T <= 8``, where XLA fuses the short loop
      into a few passes over memory, and a rolled loop (1) for longer ones, where an unrolled
      loop recomputes every earlier step for each output step. The ``"fused"`` backward always
      runs as a rolled loop (its fused reductions would be recomputed the same way).
    """

    kind: str = "glif"
    gates: str = "soft"
    static_gates: bool = False
    static_primitives: bool = False
    surrogate: str | surrogate_lib.Surrogate = "rectangular"
    surrogate_width: float | None = None
    state_dtype: str | None = None
    implementation: str = "auto"
    unroll: int | bool | None = None

    def __post_init__(self):
        _check_choice("kind", self.kind, tuple(KIND_PARAM_NAMES))
        _check_choice("gates", self.gates, GATE_MODES)
        _check_choice("implementation", self.implementation, IMPLEMENTATIONS)
        surrogate_lib.get(self.surrogate, self.surrogate_width)  # validates name and width
        if self.state_dtype is not None and not jnp.issubdtype(jnp.dtype(self.state_dtype), jnp.floating):
            raise ValueError(f"state_dtype: expected a floating dtype, got {self.state_dtype!r}")

    @property
    def param_names(self) -> tuple[str, ...]:
        """The parameter names this kind of neuron needs."""
        return KIND_PARAM_NAMES[self.kind]

    @property
    def spike_function(self) -> surrogate_lib.Surrogate:
        return surrogate_lib.get(self.surrogate, self.surrogate_width)


class NeuronState(NamedTuple):
    """What a neuron carries between steps: ``membrane`` (u) and last ``spike`` (o), ``[..., C]``."""

    membrane: jax.Array
    spike: jax.Array


class Coefficients(NamedTuple):
    """The recurrence's coefficients, each ``[]`` or ``[C]``; ``input_gain`` is ``[T]`` or ``[T, C]``."""

    decay: jax.Array
    reset_gate: jax.Array
    leak: jax.Array
    input_gain: jax.Array
    soft_reset: jax.Array
    threshold: jax.Array


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")


def _make_config(config: NeuronConfig | None, options: dict) -> NeuronConfig:
    if config is None:
        return NeuronConfig(**options)
    if options:
        return dataclasses.replace(config, **options)
    return config


def constrained(params: Params) -> dict[str, jax.Array]:
    """The values the neuron uses: ``sigmoid`` of every logit, all in (0, 1)."""
    return {name: jax.nn.sigmoid(jnp.asarray(logit)) for name, logit in params.items()}


def is_neuron_params(tree: Any) -> bool:
    """True for a mapping that holds one GLIF layer's parameters (names from PARAM_NAMES)."""
    return (
        isinstance(tree, Mapping)
        and len(tree) > 0
        and set(tree) <= set(PARAM_NAMES)
        and {"tau", "v_th"} <= set(tree)
    )


def constrained_tree(tree: Any) -> Any:
    """Replaces every GLIF parameter mapping inside ``tree`` by its constrained values.

    The rest of the tree keeps its structure and leaves, so e.g. a Flax ``params`` tree
    comes back with ``sigmoid`` applied to exactly the neurons' logits.
    """
    if is_neuron_params(tree):
        return constrained(tree)
    if isinstance(tree, Mapping):
        return {key: constrained_tree(value) for key, value in tree.items()}
    return tree


def _gate(logit: jax.Array, config: NeuronConfig) -> jax.Array:
    value = jax.nn.sigmoid(logit)
    if config.gates == "hard":
        binary = (value > 0.5).astype(value.dtype)
        value = value + jax.lax.stop_gradient(binary - value)  # exact 0/1: a + (1 - a) is exact here
    return jax.lax.stop_gradient(value) if config.static_gates else value


def _primitive(logit: jax.Array, config: NeuronConfig) -> jax.Array:
    value = jax.nn.sigmoid(logit)
    return jax.lax.stop_gradient(value) if config.static_primitives else value


def coefficients(params: Params, config: NeuronConfig, dtype: Any = jnp.float32) -> Coefficients:
    """Turns logits into the recurrence's coefficients for ``config.kind`` (the GLIF paper's neuron equations)."""
    logits = {name: jnp.asarray(params[name], dtype) for name in config.param_names}
    p = {name: _primitive(logits[name], config) for name in PRIMITIVE_NAMES if name in logits}
    one, zero = jnp.ones((), dtype), jnp.zeros((), dtype)
    if "cond" in p and p["cond"].ndim == 1 and any(jnp.ndim(v) for k, v in logits.items() if k != "cond"):
        p["cond"] = p["cond"][:, None]  # layer-wise cond [T] beside channel-wise values [C]
    if config.kind == "glif":
        a, b, g = (_gate(logits[name], config) for name in GATE_NAMES)
        return Coefficients(
            decay=1 - a * (1 - p["tau"]),
            reset_gate=g,
            leak=(1 - a) * p["lam"],
            input_gain=1 - b * (1 - p["cond"]),
            soft_reset=(1 - g) * p["v_re"],
            threshold=p["v_th"],
        )
    if config.kind == "glif_f":
        return Coefficients(p["tau"], one, p["lam"], p["cond"], p["v_re"], p["v_th"])
    return Coefficients(p["tau"], one, zero, one, zero, p["v_th"])  # lif


def _membrane_update(c: Coefficients, input_gain: jax.Array, state: NeuronState, inputs: jax.Array) -> jax.Array:
    """The GLIF paper's neuron equations: ``L + I - reset`` for one step, in the authors' order of terms."""
    leak_term = c.decay * state.membrane * (1 - c.reset_gate * state.spike) - c.leak
    return leak_term + input_gain * inputs - c.soft_reset * state.spike


def _validate(params: Any, inputs: Any, config: NeuronConfig) -> None:
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a mapping of logits {config.param_names}, got {type(params).__name__}")
    missing = [name for name in config.param_names if name not in params]
    unknown = [name for name in params if name not in config.param_names]
    if missing or unknown:
        raise ValueError(
            f"params: kind {config.kind!r} needs exactly {config.param_names}; "
            f"missing {missing}, unknown {unknown}"
        )
    if not hasattr(inputs, "shape") or not hasattr(inputs, "dtype"):
        raise TypeError(f"inputs: expected an array [T, ..., C], got {type(inputs).__name__}")
    if not jnp.issubdtype(inputs.dtype, jnp.floating):
        raise TypeError(f"inputs: expected a floating dtype (float32, bfloat16, ...), got {inputs.dtype}")
    if inputs.ndim < 1 or inputs.shape[0] < 1:
        raise ValueError(f"inputs: expected time as a leading axis of length >= 1, got shape {inputs.shape}")
    time_steps = inputs.shape[0]
    channels = inputs.shape[-1] if inputs.ndim >= 2 else None
    per_channel = ((), (channels,)) if channels is not None else ((),)
    for name in config.param_names:
        shape = tuple(jnp.shape(params[name]))
        if name == "cond":
            if len(shape) == 0 or shape[0] != time_steps:
                raise ValueError(
                    f"params['cond']: its leading axis is time and must equal the inputs' time length "
                    f"{time_steps} (inputs shape {inputs.shape}); got cond shape {shape}"
                )
            shape = shape[1:]
        if shape not in per_channel:
            raise ValueError(
                f"params[{name!r}]: expected shape {' or '.join(map(str, per_channel))} "
                f"(layer-wise, or one value per channel of inputs [T, ..., C] = {inputs.shape}); got {shape}"
            )


def _state_dtype(inputs: jax.Array, config: NeuronConfig):
    if config.state_dtype is not None:
        return jnp.dtype(config.state_dtype)
    return jnp.promote_types(inputs.dtype, jnp.float32)


def initial_state(shape: tuple[int, ...], dtype: Any = jnp.float32) -> NeuronState:
    """Zero membrane and no spike, ``shape`` = one time step's ``[..., C]``."""
    return NeuronState(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


def _initial_like(inputs: jax.Array, initial: NeuronState | None, dtype) -> NeuronState:
    """The state before step 1, typed like one step of ``inputs`` (also its shard_map axes)."""
    zeros = jnp.zeros_like(inputs[0], dtype=dtype)
    if initial is None:
        return NeuronState(zeros, zeros)
    initial = NeuronState(*initial)
    for name, value in zip(NeuronState._fields, initial):
        if jnp.shape(value) != inputs.shape[1:]:
            raise ValueError(f"initial.{name}: expected one time step's shape {inputs.shape[1:]}, got {jnp.shape(value)}")
    return NeuronState(*(zeros + jnp.asarray(value, dtype) for value in initial))


def glif_step(
    state: NeuronState,
    params: Params,
    inputs: jax.Array,
    time_step: int | jax.Array,
    config: NeuronConfig | None = None,
    **options,
) -> tuple[NeuronState, jax.Array]:
    """One step of the GLIF paper's neuron equations: ``(state, params, input_t) -> (state, spikes_t)``.

    ``inputs`` is one time step ``[..., C]``; ``time_step`` picks the row of ``cond``.
    Differentiable through the surrogate; write your own loop around it.
    """
    config = _make_config(config, options)
    coeffs = coefficients(params, config, state.membrane.dtype)
    gain = coeffs.input_gain[time_step] if coeffs.input_gain.ndim else coeffs.input_gain
    state, (spikes, _) = _autodiff_step(coeffs, config.spike_function, state, (gain, inputs))
    return state, spikes


def _autodiff_step(coeffs, spike_function, state, gain_and_input):
    gain, inputs = gain_and_input
    membrane = _membrane_update(coeffs, gain, state, inputs.astype(state.membrane.dtype))
    spike = surrogate_lib.heaviside(membrane - coeffs.threshold, spike_function)
    return NeuronState(membrane, spike), (spike, membrane)


def _per_step_gain(coeffs: Coefficients, time_steps: int) -> jax.Array:
    if coeffs.input_gain.ndim:
        return coeffs.input_gain
    return jnp.broadcast_to(coeffs.input_gain, (time_steps,))


_MAX_UNROLLED_STEPS = 8


def _unroll(unroll: int | bool | None, time_steps: int) -> int | bool:
    """``NeuronConfig.unroll`` with ``None`` resolved for ``time_steps`` (see there)."""
    if unroll is None:
        return True if time_steps <= _MAX_UNROLLED_STEPS else 1
    return unroll


def _autodiff_scan(coeffs, inputs, state, spike_function, unroll):
    gains = _per_step_gain(coeffs, inputs.shape[0])
    step = functools.partial(_autodiff_step, coeffs, spike_function)
    _, (spikes, membranes) = jax.lax.scan(step, state, (gains, inputs), unroll=unroll)
    return spikes.astype(inputs.dtype), membranes


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused_scan(spike_function, unroll, coeffs, inputs, membrane0, spike0):
    """Forward of the recurrence; returns (spikes in the inputs' dtype, membranes in state dtype)."""
    return _fused_forward(unroll, coeffs, inputs, membrane0, spike0)


def _fused_forward(unroll, coeffs, inputs, membrane0, spike0):
    def step(membrane_prev, xs):
        # Only the membrane is carried: the last spike is recomputed from it (same bits), which
        # saves writing and reading a spike array per step; step 0 takes the given spike0.
        # Spikes leave the loop as booleans (a quarter of the bytes) and become floats after it.
        time_step, gain, inputs_t = xs
        spike_prev = jnp.where(time_step == 0, spike0, (membrane_prev - coeffs.threshold > 0).astype(spike0.dtype))
        state = NeuronState(membrane_prev, spike_prev)
        membrane = _membrane_update(coeffs, gain, state, inputs_t.astype(membrane0.dtype))
        return membrane, (membrane - coeffs.threshold > 0, membrane)  # exact Heaviside forward

    time_steps = inputs.shape[0]
    xs = (jnp.arange(time_steps), _per_step_gain(coeffs, time_steps), inputs)
    _, (spikes, membranes) = jax.lax.scan(step, membrane0, xs, unroll=unroll)
    return spikes.astype(inputs.dtype), membranes


def _fused_scan_fwd(spike_function, unroll, coeffs, inputs, membrane0, spike0):
    # symbolic_zeros: every array argument arrives wrapped with its `perturbed` bit
    coeffs, inputs, membrane0, spike0 = jax.custom_derivatives.custom_vjp_primal_tree_values(
        (coeffs, inputs, membrane0, spike0)
    )
    spikes, membranes = _fused_forward(unroll, coeffs, inputs, membrane0, spike0)
    return (spikes, membranes), (coeffs, inputs, membrane0, spike0, membranes)


# The backward sums six per-step terms over batch and space. One jnp.sum per term would read the
# step's arrays six times (XLA:CPU's library reductions fuse no compare/select, so it also writes
# intermediates), and one variadic reduction over all elements is a slow strided loop. So the
# leading elements are split into a few equal chunks that one variadic reduction adds together
# (one streaming pass for all terms), and the small partials are then summed per term.
_MAX_CHUNKS = 8


def _chunk_count(size: int) -> int:
    """The largest divisor of ``size`` that is at most ``_MAX_CHUNKS`` (1 if none is larger)."""
    return max(k for k in range(1, min(size, _MAX_CHUNKS) + 1) if size % k == 0)


def _sum_to(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Sums away the axes along which something of ``shape`` was broadcast to ``x.shape``."""
    x = jnp.sum(x, axis=tuple(range(x.ndim - len(shape))))
    axes = tuple(axis for axis, size in enumerate(shape) if size == 1 and x.shape[axis] != 1)
    return jnp.sum(x, axis=axes, keepdims=True) if axes else x


def _sums_to(values: dict[str, jax.Array], shapes: dict[str, tuple[int, ...]]) -> dict[str, jax.Array]:
    """``_sum_to(values[name], shapes[name])`` for every name, reading the arrays once for all sums."""
    groups: dict[tuple[tuple[int, ...], int], list[str]] = {}
    for name, value in values.items():
        groups.setdefault((value.shape, value.ndim - len(shapes[name])), []).append(name)
    sums = {}
    for (shape, leading), names in groups.items():
        size = math.prod(shape[:leading])
        chunks = _chunk_count(size)
        operands = tuple(values[name].reshape(chunks, size // chunks, *shape[leading:]) for name in names)
        if chunks > 1:
            zeros = tuple(jnp.zeros((), x.dtype) for x in operands)
            partials = jax.lax.reduce(operands, zeros, lambda a, b: tuple(x + y for x, y in zip(a, b)), (0,))
        else:
            partials = tuple(x[0] for x in operands)
        sums.update({name: _sum_to(partial, shapes[name]) for name, partial in zip(names, partials)})
    return sums


def _is_zero(cotangent) -> bool:
    return isinstance(cotangent, jax.custom_derivatives.SymbolicZero)


def _fused_scan_bwd(spike_function, unroll, residuals, cotangents):
    """Backward through time, from t = T down to 1, then the initial state (a rolled loop).

    ``delta`` is dL/du_t in total (its own spike, its membrane output and every later step).
    Step t+1's use of ``u_t`` and ``o_t`` is accounted for at iteration t, so that each
    iteration reads only the membrane ``u_t`` it saved (spikes are recomputed from it).
    Cotangents of unused outputs arrive as symbolic zeros and are never materialised.
    """
    del unroll  # the loop stays rolled: unrolled, XLA would recompute each step's sums from scratch
    coeffs, inputs, membrane0, spike0, membranes = residuals
    grad_spikes, grad_membranes = cotangents
    dtype = membranes.dtype
    c = coeffs
    shapes = {name: jnp.shape(value) for name, value in c._asdict().items()}

    def from_next_step(delta_next, membrane, spike):
        """Step t+1's use of ``(u_t, o_t)``: coefficient terms to sum, and dL/du_t, dL/do_t through it."""
        terms = {
            "decay": delta_next * membrane * (1 - c.reset_gate * spike),
            "reset_gate": delta_next * c.decay * membrane * spike,  # summed, then negated
            "soft_reset": delta_next * spike,  # summed, then negated
        }
        grad_membrane = delta_next * c.decay * (1 - c.reset_gate * spike)
        grad_spike = -delta_next * (c.decay * c.reset_gate * membrane + c.soft_reset)
        return grad_membrane, grad_spike, terms

    def step(delta_next, xs):
        membrane, inputs_t, gain = xs["membrane"], xs["inputs"], xs["gain"]
        distance = membrane - c.threshold
        spike = (distance > 0).astype(dtype)
        grad_membrane, grad_spike, terms = from_next_step(delta_next, membrane, spike)
        if "grad_spike" in xs:
            grad_spike = grad_spike + xs["grad_spike"].astype(dtype)
        through_spike = grad_spike * spike_function(distance)
        delta = grad_membrane + xs["grad_membrane"] if "grad_membrane" in xs else grad_membrane
        delta = delta + through_spike
        terms.update(threshold=through_spike, leak=delta, input_gain=delta * inputs_t.astype(dtype))
        sums = _sums_to(terms, {**shapes, "input_gain": jnp.shape(gain)})
        return delta, ((delta * gain).astype(inputs.dtype), sums)

    xs = {"membrane": membranes, "inputs": inputs, "gain": _per_step_gain(c, inputs.shape[0])}
    if not _is_zero(grad_spikes):
        xs["grad_spike"] = grad_spikes
    if not _is_zero(grad_membranes):
        xs["grad_membrane"] = grad_membranes
    # per-step sums come out as ys (not a carry) so that shard_map's varying-axis types line up;
    # carrying them summed over time measured slower (the loop copies its carry)
    delta_last = jnp.zeros_like(membrane0)
    delta_first, (grad_inputs, step_sums) = jax.lax.scan(step, delta_last, xs, reverse=True)
    grad_membrane0, grad_spike0, first_terms = from_next_step(delta_first, membrane0, spike0)
    first_sums = _sums_to(first_terms, shapes)
    totals = {name: jnp.sum(value, axis=0) for name, value in step_sums.items()}
    for name, value in first_sums.items():
        totals[name] = totals[name] + value
    for name in ("reset_gate", "soft_reset", "threshold", "leak"):
        totals[name] = -totals[name]
    grad_gain = step_sums["input_gain"] if c.input_gain.ndim else totals["input_gain"]
    grad_coeffs = Coefficients(**{name: totals[name] for name in Coefficients._fields if name != "input_gain"},
                               input_gain=grad_gain)
    grad_coeffs = jax.tree.map(lambda g, x: g.astype(x.dtype).reshape(x.shape), grad_coeffs, c)
    return grad_coeffs, grad_inputs, grad_membrane0, grad_spike0


_fused_scan.defvjp(_fused_scan_fwd, _fused_scan_bwd, symbolic_zeros=True)


def glif_scan(
    params: Params,
    inputs: jax.Array,
    initial: NeuronState | None = None,
    config: NeuronConfig | None = None,
    **options,
) -> tuple[jax.Array, jax.Array, NeuronState]:
    """Runs the neuron over time and returns everything it computed.

    Args:
      params: logits under ``config.param_names``; ``cond`` is ``[T]`` or ``[T, C]``, the
        others ``[]`` (layer-wise) or ``[C]`` (channel-wise).
      inputs: synaptic input ``[T, ..., C]``, floating.
      initial: state before the first step (default: zeros), each ``[..., C]``.
      config / options: a :class:`NeuronConfig`, or its fields as keywords.

    Returns:
      ``spikes`` (shape and dtype of ``inputs``), ``membranes`` ``[T, ..., C]`` in the
      state dtype, and the final ``NeuronState`` (to continue a stream).
    """
    spikes, membranes = _run(params, inputs, initial, _make_config(config, options), keep_membranes=True)
    final = NeuronState(membranes[-1], spikes[-1].astype(membranes.dtype))
    return spikes, membranes, final


def _run(params, inputs, initial, config: NeuronConfig, keep_membranes: bool):
    """Spikes, and the membranes ``[T, ..., C]`` in the state dtype (a scalar zero unless kept)."""
    _validate(params, inputs, config)
    dtype = _state_dtype(inputs, config)
    given = initial is not None
    initial = _initial_like(inputs, initial, dtype)
    coeffs = coefficients(params, config, dtype)
    if config.implementation == "autodiff":
        spikes, membranes = _autodiff_scan(coeffs, inputs, initial, config.spike_function,
                                           _unroll(config.unroll, inputs.shape[0]))
        return spikes, membranes if keep_membranes else jnp.zeros((), dtype)

    def fused():
        spikes, membranes = _fused_scan(config.spike_function, _unroll(config.unroll, inputs.shape[0]),
                                        coeffs, inputs, *initial)
        return spikes, membranes if keep_membranes else jnp.zeros((), dtype)

    def kernel():
        spikes, membranes = cpu_kernel.scan(coeffs, inputs, initial if given else None, config.spike_function,
                                            keep_membranes)
        return spikes, membranes if keep_membranes else jnp.zeros((), dtype)  # glif() reads spikes only

    if config.implementation == "fused":
        return fused()
    if config.implementation == "kernel":
        return kernel()
    if cpu_kernel.unsupported(config.spike_function, inputs.dtype, dtype) is not None:
        if not cpu_kernel.available():
            cpu_kernel.warn_unavailable()
        return fused()
    # "auto": chosen when lowering, so the same function also compiles for GPU and TPU
    return jax.lax.platform_dependent(cpu=kernel, default=fused)


def glif(params: Params, inputs: jax.Array, config: NeuronConfig | None = None, **options) -> jax.Array:
    """GLIF spikes ``[T, ..., C]`` (shape and dtype of ``inputs``) from zero initial state.

    See :func:`glif_scan` for the arguments; e.g.
    ``glif(params, x, gates="hard", surrogate="sigmoid", surrogate_width=4.0)``.
    """
    return _run(params, inputs, None, _make_config(config, options), keep_membranes=False)[0]

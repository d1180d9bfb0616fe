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
else as an XLA scan with a hand-written backward pass through time (``"xla"``,
:mod:`glif_jax.xla_scan`, which keeps only the membrane of every step), or with autodiff
through :func:`jax.lax.scan` of :func:`glif_step` (``"autodiff"``). This module holds the
equations, the configuration and the choice among these backends.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from glif_jax import cpu_kernel, xla_scan
from glif_jax.errors import OptionError, check_choice, check_flag, check_integer
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
IMPLEMENTATIONS = ("auto", "kernel", "xla", "autodiff")
# earlier names of implementations, accepted with a DeprecationWarning
DEPRECATED_IMPLEMENTATIONS = {"fused": "xla"}

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
    implementation: ``"xla"`` (an XLA time scan with a hand-written backward through time,
      :mod:`glif_jax.xla_scan`), ``"kernel"`` (the compiled CPU kernel of
      :mod:`glif_jax.cpu_kernel`: the same numbers, several times faster on the CPU; an error
      where it cannot run), ``"auto"`` (the kernel when compiling for the CPU and it supports
      the neuron, else ``"xla"``), or ``"autodiff"`` (autodiff through a scan of
      :func:`glif_step`; also differentiable twice). ``"fused"``, the earlier name of
      ``"xla"``, still works and warns (``DeprecationWarning``).
    unroll: ``jax.lax.scan`` unroll factor of the XLA forward time loop (``True`` unrolls it
      whole); ``None`` picks by length: whole for ``T <= 8``, where XLA fuses the short loop
      into a few passes over memory, and a rolled loop (1) for longer ones, where an unrolled
      loop recomputes every earlier step for each output step. The ``"xla"`` backward always
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
        if self.implementation in DEPRECATED_IMPLEMENTATIONS:
            current = DEPRECATED_IMPLEMENTATIONS[self.implementation]
            warnings.warn(f"implementation={self.implementation!r} is deprecated; it is now called {current!r}",
                          DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "implementation", current)  # frozen: set once, here
        check_choice("kind", self.kind, tuple(KIND_PARAM_NAMES))
        check_choice("gates", self.gates, GATE_MODES)
        check_choice("implementation", self.implementation, IMPLEMENTATIONS)
        check_flag("static_gates", self.static_gates)
        check_flag("static_primitives", self.static_primitives)
        surrogate_lib.get(self.surrogate, self.surrogate_width)  # validates name and width
        if self.state_dtype is not None and not _is_floating_dtype(self.state_dtype):
            raise OptionError("state_dtype", f"expected a floating dtype, got {self.state_dtype!r}")
        if self.unroll is not None and not isinstance(self.unroll, bool):
            check_integer("unroll", self.unroll, minimum=0)   # jax.lax.scan: 0 unrolls the whole loop

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


def _is_floating_dtype(name: Any) -> bool:
    try:
        return jnp.issubdtype(jnp.dtype(name), jnp.floating)
    except TypeError:
        return False


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


def _map_neuron_params(function: Callable[[str, Params], Any], tree: Any, keys: tuple[str, ...] = ()) -> Any:
    """``tree`` (its mappings as dicts) with every GLIF layer's parameter mapping replaced by
    ``function(path, params)``, ``path`` being the keys that lead to it joined by ``/``.

    The one walk over a parameter tree that finds the GLIF layers: :func:`constrained_tree`,
    :func:`neuron_scopes` and through them ``glif_jax.layers.neuron_values`` and the optimiser's
    parameter groups (``glif_jax.optim.param_labels``) all use it.
    """
    if is_neuron_params(tree):
        return function("/".join(keys), tree)
    if isinstance(tree, Mapping):
        return {key: _map_neuron_params(function, value, (*keys, str(key))) for key, value in tree.items()}
    return tree


def neuron_scopes(tree: Any) -> dict[str, Params]:
    """Every GLIF layer's parameters inside ``tree``, ``{path: params}`` in the tree's order.

    A GLIF layer's scope is a mapping that holds one neuron's parameters and nothing else
    (:func:`is_neuron_params`), as the Flax layer ``glif_jax.layers.GLIF`` stores them;
    nested mappings (e.g. a Flax ``params`` tree) are searched, and the keys of a path are
    joined by ``/`` (``"stage1_block1/glif1"``; ``""`` when ``tree`` itself is one layer's).
    """
    found: dict[str, Params] = {}
    _map_neuron_params(found.setdefault, tree)
    return found


def constrained_tree(tree: Any) -> Any:
    """Replaces every GLIF parameter mapping inside ``tree`` by its constrained values.

    The rest of the tree keeps its structure and leaves, so e.g. a Flax ``params`` tree
    comes back with ``sigmoid`` applied to exactly the neurons' logits.
    """
    return _map_neuron_params(lambda _, params: constrained(params), tree)


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
    membrane = coeffs.membrane_update(state.membrane, state.spike, gain, inputs.astype(state.membrane.dtype))
    spike = surrogate_lib.heaviside(membrane - coeffs.threshold, spike_function)
    return NeuronState(membrane, spike), (spike, membrane)


_MAX_UNROLLED_STEPS = 8


def _unroll(unroll: int | bool | None, time_steps: int) -> int | bool:
    """``NeuronConfig.unroll`` with ``None`` resolved for ``time_steps`` (see there)."""
    if unroll is None:
        return True if time_steps <= _MAX_UNROLLED_STEPS else 1
    return unroll


def _autodiff_scan(coeffs, inputs, state, spike_function, unroll):
    gains = coeffs.per_step_gain(inputs.shape[0])
    step = functools.partial(_autodiff_step, coeffs, spike_function)
    _, (spikes, membranes) = jax.lax.scan(step, state, (gains, inputs), unroll=unroll)
    return spikes.astype(inputs.dtype), membranes


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

    def xla():
        spikes, membranes = xla_scan.scan(coeffs, inputs, initial, config.spike_function,
                                          _unroll(config.unroll, inputs.shape[0]))
        return spikes, membranes if keep_membranes else jnp.zeros((), dtype)

    def kernel():
        spikes, membranes = cpu_kernel.scan(coeffs, inputs, initial if given else None, config.spike_function,
                                            keep_membranes)
        return spikes, membranes if keep_membranes else jnp.zeros((), dtype)  # glif() reads spikes only

    if config.implementation == "xla":
        return xla()
    if config.implementation == "kernel":
        return kernel()
    if cpu_kernel.why_unsupported(config.spike_function, inputs.dtype, dtype) is not None:
        cpu_kernel.warn_unavailable()   # only when the kernel is missing
        return xla()
    # "auto": chosen when lowering, so the same function also compiles for GPU and TPU
    return jax.lax.platform_dependent(cpu=kernel, default=xla)


def glif(params: Params, inputs: jax.Array, config: NeuronConfig | None = None, **options) -> jax.Array:
    """GLIF spikes ``[T, ..., C]`` (shape and dtype of ``inputs``) from zero initial state.

    See :func:`glif_scan` for the arguments; e.g.
    ``glif(params, x, gates="hard", surrogate="sigmoid", surrogate_width=4.0)``.
    """
    return _run(params, inputs, None, _make_config(config, options), keep_membranes=False)[0]

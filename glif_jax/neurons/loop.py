"""The time loop every neuron shares: checks, constrained values, the scan, the backward pass.

``run`` / ``scan`` take the *stored* (raw) parameters of a layer, apply each parameter's
constraint (and the config's gate mode and static groups), then run the neuron over time: its
own fast path where it has one (GLIF's compiled CPU kernel and hand-written XLA backward), else
``jax.lax.scan`` of its step. With the default ``backward="remat"`` the step is wrapped in
``jax.checkpoint``: the backward pass keeps only each step's state and recomputes the step, so
training memory is one state per time step whatever the step computes inside.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator, Mapping

import jax
import jax.numpy as jnp

from glif_jax import surrogate as surrogate_lib
from glif_jax.neurons.config import NeuronConfig
from glif_jax.neurons.interface import Neuron

Params = Mapping[str, jax.Array]

_MAX_UNROLLED_STEPS = 8
_SURROGATE: contextvars.ContextVar[surrogate_lib.Surrogate | None] = contextvars.ContextVar(
    "glif_jax_surrogate", default=None)


# ---- the spike a step uses ------------------------------------------------------------------
def spike(x: jax.Array, *, inclusive: bool = False) -> jax.Array:
    """The spike of a neuron step: ``H(x)`` forward (1 where ``x > 0``; with ``inclusive`` where
    ``x >= 0``), the configured surrogate derivative backward.

    Inside :func:`run` / :func:`scan` the surrogate is the config's (``NeuronConfig.surrogate``);
    elsewhere the paper's rectangular window.
    """
    return surrogate_lib.heaviside(x, _SURROGATE.get() or surrogate_lib.get(), inclusive=inclusive)


@contextlib.contextmanager
def using_surrogate(function: surrogate_lib.Surrogate) -> Iterator[None]:
    """Makes :func:`spike` use ``function`` while tracing inside the block."""
    token = _SURROGATE.set(function)
    try:
        yield
    finally:
        _SURROGATE.reset(token)


# ---- parameters -----------------------------------------------------------------------------
def check_params(neuron: Neuron, params: Any, inputs: Any) -> None:
    """Clear errors for parameters that do not fit ``neuron`` and ``inputs`` ``[T, ..., C]``."""
    what = f"neuron {neuron.name!r}"
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a mapping of the parameters {neuron.param_names} of {what}, "
                        f"got {type(params).__name__}")
    missing = [name for name in neuron.param_names if name not in params]
    unknown = [name for name in params if name not in neuron.param_names]
    if missing or unknown:
        raise ValueError(f"params: {what} needs exactly {neuron.param_names}; missing {missing}, unknown {unknown}")
    if not hasattr(inputs, "shape") or not hasattr(inputs, "dtype"):
        raise TypeError(f"inputs: expected an array [T, ..., C], got {type(inputs).__name__}")
    if not jnp.issubdtype(inputs.dtype, jnp.floating):
        raise TypeError(f"inputs: expected a floating dtype (float32, bfloat16, ...), got {inputs.dtype}")
    if inputs.ndim < 1 or inputs.shape[0] < 1:
        raise ValueError(f"inputs: expected time as a leading axis of length >= 1, got shape {inputs.shape}")
    time_steps = inputs.shape[0]
    channels = inputs.shape[-1] if inputs.ndim >= 2 else None
    for parameter in neuron.parameters:
        shape = tuple(jnp.shape(params[parameter.name]))
        if parameter.per_time_step:
            if len(shape) == 0 or shape[0] != time_steps:
                raise ValueError(
                    f"params[{parameter.name!r}]: its leading axis is time and must equal the inputs' time length "
                    f"{time_steps} (inputs shape {inputs.shape}); got {parameter.name} shape {shape}")
            shape = shape[1:]
        allowed = ((), (channels,)) if parameter.per_channel and channels is not None else ((),)
        if shape not in allowed:
            raise ValueError(
                f"params[{parameter.name!r}]: expected shape {' or '.join(map(str, allowed))} (layer-wise, or one "
                f"value per channel of inputs [T, ..., C] = {inputs.shape}); got {shape}")


def constrained_values(neuron: Neuron, params: Params, config: NeuronConfig, dtype: Any) -> dict[str, jax.Array]:
    """The values a step uses: each raw parameter cast to ``dtype`` and constrained, gates binarised
    (straight-through) in ``gates="hard"`` mode, static groups without gradient."""
    values = {}
    for parameter in neuron.parameters:
        value = parameter.constrain(jnp.asarray(params[parameter.name], dtype))
        if parameter.group == "gates":
            if config.gates == "hard":
                binary = (value > 0.5).astype(value.dtype)
                value = value + jax.lax.stop_gradient(binary - value)  # exact 0/1: a + (1 - a) is exact here
            if config.static_gates:
                value = jax.lax.stop_gradient(value)
        elif parameter.group == "primitives" and config.static_primitives:
            value = jax.lax.stop_gradient(value)
        values[parameter.name] = value
    return values


def unroll_for(unroll: int | bool | None, time_steps: int) -> int | bool:
    """``NeuronConfig.unroll`` with ``None`` resolved for ``time_steps`` (see there)."""
    if unroll is None:
        return True if time_steps <= _MAX_UNROLLED_STEPS else 1
    return unroll


# ---- the state ------------------------------------------------------------------------------
def initial_like(neuron: Neuron, inputs: jax.Array, initial: Any, dtype: Any) -> Any:
    """The state before step 1, typed like one step of ``inputs`` (also its shard_map axes).

    ``initial`` is None (the neuron's own initial state) or a state of the neuron's structure,
    each leaf one time step's shape.
    """
    zeros = jnp.zeros_like(inputs[0], dtype=dtype)
    default = neuron.initial(inputs.shape[1:], dtype)
    if initial is None:
        return jax.tree.map(lambda leaf: zeros + jnp.asarray(leaf, dtype), default)
    expected = jax.tree.structure(default)
    if jax.tree.structure(initial) != expected:
        # a NamedTuple of another class with the same fields is accepted
        leaves = jax.tree.leaves(initial)
        if len(leaves) != expected.num_leaves:
            raise ValueError(f"initial: neuron {neuron.name!r} carries a state like {expected}, got {initial!r}")
        initial = jax.tree.unflatten(expected, leaves)
    names = _leaf_names(default)
    for name, value in zip(names, jax.tree.leaves(initial)):
        if jnp.shape(value) != inputs.shape[1:]:
            raise ValueError(f"initial{name}: expected one time step's shape {inputs.shape[1:]}, got {jnp.shape(value)}")
    return jax.tree.map(lambda leaf: zeros + jnp.asarray(leaf, dtype), initial)


def _leaf_names(tree: Any) -> list[str]:
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _check_step(neuron: Neuron, step, state, values, inputs) -> None:
    """Traces one step abstractly: spikes must be floating and shaped like one input step, and the
    state must keep its structure, shapes and dtypes (else ``jax.lax.scan`` fails obscurely)."""
    new_state, spikes = jax.eval_shape(step, state, values, inputs[0].astype(_dtype_of(state)), jnp.int32(0))
    if not hasattr(spikes, "shape") or tuple(spikes.shape) != tuple(inputs.shape[1:]):
        raise ValueError(f"neuron {neuron.name!r}: its step returned spikes of shape "
                         f"{getattr(spikes, 'shape', type(spikes).__name__)}; expected one time step's shape "
                         f"{tuple(inputs.shape[1:])}")
    if not jnp.issubdtype(spikes.dtype, jnp.floating):
        raise TypeError(f"neuron {neuron.name!r}: its step returned spikes of dtype {spikes.dtype}; expected a "
                        "floating dtype (use glif_jax.neurons.spike)")
    before = jax.tree.map(lambda x: (tuple(x.shape), jnp.dtype(x.dtype)), state)
    after = jax.tree.map(lambda x: (tuple(x.shape), jnp.dtype(x.dtype)), new_state)
    if jax.tree.structure(before) != jax.tree.structure(after) or jax.tree.leaves(before) != jax.tree.leaves(after):
        raise ValueError(f"neuron {neuron.name!r}: its step changed the state's structure, shapes or dtypes "
                         f"from {before} to {after}")


def _dtype_of(state: Any) -> Any:
    leaves = jax.tree.leaves(state)
    return leaves[0].dtype if leaves else jnp.float32


# ---- the loop -------------------------------------------------------------------------------
def _library_scan(neuron: Neuron, values, inputs, initial, config: NeuronConfig, keep_states: bool):
    """``jax.lax.scan`` of the neuron's step; spikes in the inputs' dtype, and every step's state."""
    step = neuron.bound_step()
    _check_step(neuron, step, initial, values, inputs)
    dtype = _dtype_of(initial)

    def body(state, xs):
        time_step, inputs_t = xs
        state, spikes_t = step(state, values, inputs_t.astype(dtype), time_step)
        return state, (spikes_t.astype(inputs.dtype), state if keep_states else None)

    if config.implementation != "autodiff" and neuron.backward == "remat":
        body = jax.checkpoint(body)   # keep each step's state, recompute the step in the backward pass
    xs = (jnp.arange(inputs.shape[0]), inputs)
    final, (spikes, states) = jax.lax.scan(body, initial, xs, unroll=unroll_for(config.unroll, inputs.shape[0]))
    return spikes, states, final


def scan(params: Params, inputs: jax.Array, config: NeuronConfig, initial: Any = None,
         keep_states: bool = True) -> tuple[jax.Array, Any, Any]:
    """Runs ``config``'s neuron over time from its stored parameters.

    Args:
      params: the raw parameters under the neuron's names (``[]``/``[C]``, a leading ``[T]`` for
        per-time-step ones).
      inputs: ``[T, ..., C]``, floating.
      config: the :class:`NeuronConfig`.
      initial: the state before the first step (default: the neuron's initial state).
      keep_states: also return every step's state (else ``None``; cheaper where a fast path can
        skip writing them).

    Returns:
      ``spikes`` (shape and dtype of ``inputs``), the states of every step (each leaf
      ``[T, ..., C]`` in the state dtype) or None, and the final state.
    """
    neuron = config.neuron
    check_params(neuron, params, inputs)
    dtype = config.state_dtype_for(inputs.dtype)
    start = None if initial is None else initial_like(neuron, inputs, initial, dtype)
    values = constrained_values(neuron, params, config, dtype)
    with using_surrogate(config.spike_function):
        if neuron.fast_scan is not None and config.implementation != "autodiff":
            result = neuron.fast_scan(values, inputs, start, config, keep_states)   # None: the neuron's zeros
            if result is not None:
                spikes, states = result
                final = None if states is None else jax.tree.map(lambda leaf: leaf[-1], states)
                return spikes, states, final
        if start is None:
            start = initial_like(neuron, inputs, None, dtype)
        return _library_scan(neuron, values, inputs, start, config, keep_states)


def run(params: Params, inputs: jax.Array, config: NeuronConfig) -> jax.Array:
    """Spikes ``[T, ..., C]`` (shape and dtype of ``inputs``) from the neuron's initial state."""
    return scan(params, inputs, config, keep_states=False)[0]


def step(state: Any, params: Params, inputs: jax.Array, time_step: int | jax.Array,
         config: NeuronConfig) -> tuple[Any, jax.Array]:
    """One step of ``config``'s neuron from stored parameters: ``(state, params, inputs_t, t) -> (state, spikes_t)``.

    ``inputs`` is one time step ``[..., C]``; differentiable through the surrogate; write your
    own loop around it.
    """
    neuron = config.neuron
    dtype = _dtype_of(state)
    values = constrained_values(neuron, params, config, dtype)
    with using_surrogate(config.spike_function):
        return neuron.bound_step()(state, values, jnp.asarray(inputs).astype(dtype), time_step)

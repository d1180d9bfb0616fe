"""The GLIF time loop as an XLA scan with a hand-written backward pass through time.

This is ``implementation="xla"`` of :class:`glif_jax.neuron.NeuronConfig`, the path that GPUs
and TPUs run (and the CPU where the compiled kernel of :mod:`glif_jax.cpu_kernel` cannot).
The forward pass is a :func:`jax.lax.scan` of the recurrence of
:func:`glif_jax.neuron.coefficients` (one step: :meth:`glif_jax.neuron.Coefficients.membrane_update`);
one :func:`jax.custom_vjp` around it keeps only each step's membrane, recomputes the spikes
from it, and runs the backward pass through time by hand, with the spike's surrogate
derivative, as a rolled loop from the last step to the first. See "Implementations" in the
project's documentation of the neuron (``docs/neuron.md``).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from glif_jax import surrogate as surrogate_lib


def scan(coeffs, inputs: jax.Array, initial: tuple[jax.Array, jax.Array], spike_function: surrogate_lib.Surrogate,
         unroll: int | bool) -> tuple[jax.Array, jax.Array]:
    """The recurrence over time, differentiable with ``spike_function``'s surrogate.

    Args:
      coeffs: :class:`glif_jax.neuron.Coefficients` in the state dtype (each ``[]`` or
        ``[C]``; ``input_gain`` ``[]``, ``[T]`` or ``[T, C]``).
      inputs: ``[T, ..., C]``, floating.
      initial: ``(membrane, spike)`` before the first step, each ``[..., C]`` in the state dtype.
      unroll: :func:`jax.lax.scan` unroll factor of the forward loop (the backward stays rolled).

    Returns:
      ``spikes`` (shape and dtype of ``inputs``) and the membranes ``[T, ..., C]`` in the
      state dtype.
    """
    membrane0, spike0 = initial
    return _scan(spike_function, unroll, coeffs, inputs, membrane0, spike0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _scan(spike_function, unroll, coeffs, inputs, membrane0, spike0):
    """Forward of the recurrence; returns (spikes in the inputs' dtype, membranes in state dtype)."""
    return _forward(unroll, coeffs, inputs, membrane0, spike0)


def _forward(unroll, coeffs, inputs, membrane0, spike0):
    def step(membrane_prev, xs):
        # Only the membrane is carried: the last spike is recomputed from it (same bits), which
        # saves writing and reading a spike array per step; step 0 takes the given spike0.
        # Spikes leave the loop as booleans (a quarter of the bytes) and become floats after it.
        time_step, gain, inputs_t = xs
        spike_prev = jnp.where(time_step == 0, spike0, (membrane_prev - coeffs.threshold > 0).astype(spike0.dtype))
        membrane = coeffs.membrane_update(membrane_prev, spike_prev, gain, inputs_t.astype(membrane0.dtype))
        return membrane, (membrane - coeffs.threshold > 0, membrane)  # exact Heaviside forward

    time_steps = inputs.shape[0]
    xs = (jnp.arange(time_steps), coeffs.per_step_gain(time_steps), inputs)
    _, (spikes, membranes) = jax.lax.scan(step, membrane0, xs, unroll=unroll)
    return spikes.astype(inputs.dtype), membranes


def _scan_fwd(spike_function, unroll, coeffs, inputs, membrane0, spike0):
    # symbolic_zeros: every array argument arrives wrapped with its `perturbed` bit
    coeffs, inputs, membrane0, spike0 = jax.custom_derivatives.custom_vjp_primal_tree_values(
        (coeffs, inputs, membrane0, spike0)
    )
    spikes, membranes = _forward(unroll, coeffs, inputs, membrane0, spike0)
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


def _scan_bwd(spike_function, unroll, residuals, cotangents):
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

    xs = {"membrane": membranes, "inputs": inputs, "gain": c.per_step_gain(inputs.shape[0])}
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
    grad_coeffs = c._replace(**{name: totals[name] for name in c._fields if name != "input_gain"},
                             input_gain=grad_gain)
    grad_coeffs = jax.tree.map(lambda g, x: g.astype(x.dtype).reshape(x.shape), grad_coeffs, c)
    return grad_coeffs, grad_inputs, grad_membrane0, grad_spike0


_scan.defvjp(_scan_fwd, _scan_bwd, symbolic_zeros=True)

"""The GLIF time loop as a compiled CPU kernel (``glif_jax/csrc/glif_cpu.cc``), differentiable.

XLA:CPU runs the neuron's time loop as ``T`` passes over memory. The kernel instead runs the
steps of a block of elements with the state in registers, forward and backward through time
(one pass over memory; large outputs written with non-temporal stores), on XLA's own intra-op
threads: a tile of neurons 16 steps at a time, so that long sequences stream as well as short
ones, with wide layers cut into slabs of channels for the threads. A layer-wise (or LIF) input
gain stays one value per step, and the input gain's gradient is computed only where a
parameter needs it. It computes the recurrence of
:func:`glif_jax.neuron.coefficients` term by term in order without fused multiply-adds, so its
float32/float64 spikes and membranes are bit-identical to those equations evaluated in NumPy
(XLA:CPU contracts some of them into FMAs: its membranes can differ in the last bit); gradients
agree with the XLA path (:mod:`glif_jax.xla_scan`) to float rounding.

It is built by ``pip install`` (an optional C++ extension: without a compiler the install
still succeeds and :func:`available` is False). On x86-64 its loops are compiled for AVX-512,
AVX2 and baseline x86-64, and the best level the CPU has is used; the environment variable
``GLIF_JAX_CPU_ISA`` (``avx2`` or ``baseline``) picks a lower one, e.g. to compare them;
:func:`isa` says which runs. :func:`glif_jax.neuron.glif` uses it on the
CPU when it can (``implementation="auto"``) and the XLA path everywhere else.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import math
import os
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from glif_jax import surrogate as surrogate_lib

_EXTENSION = "glif_jax._glif_cpu"
_FORWARD, _BACKWARD = "glif_jax_cpu_forward", "glif_jax_cpu_backward"
# the kernel's own surrogate derivatives, by their ids in glif_cpu.cc
SURROGATES = {
    surrogate_lib.rectangular: 0,
    surrogate_lib.sigmoid: 1,
    surrogate_lib.arctan: 2,
    surrogate_lib.triangle: 3,
}
DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))
# x86 levels of the kernel's loops, by the numbers GlifIsa returns; the variable that lowers it
ISAS = ("baseline", "avx2", "avx512")
ISA_VARIABLE = "GLIF_JAX_CPU_ISA"


def _check_isa_variable() -> None:
    asked = os.environ.get(ISA_VARIABLE)
    if asked is not None and asked not in ISAS:
        raise ValueError(f"{ISA_VARIABLE}={asked!r}: expected one of {', '.join(ISAS)} (or leave it unset)")


@functools.cache
def _library() -> ctypes.CDLL | str:
    """The compiled extension, or why it cannot be loaded."""
    spec = importlib.util.find_spec(_EXTENSION)
    if spec is None or spec.origin is None:
        return (
            "the C++ extension glif_jax._glif_cpu is not built (it needs a C++17 compiler at "
            "`pip install` time; reinstall with one to get the fast CPU path)"
        )
    try:
        return ctypes.cdll.LoadLibrary(spec.origin)
    except OSError as error:
        return f"the C++ extension {spec.origin} could not be loaded: {error}"


@functools.cache
def _load() -> str | None:
    """Loads the compiled extension and registers its targets; returns why not, or None."""
    _check_isa_variable()
    library = _library()
    if isinstance(library, str):
        return library
    try:
        jax.ffi.register_ffi_target(_FORWARD, jax.ffi.pycapsule(library.GlifForward), platform="cpu")
        jax.ffi.register_ffi_target(_BACKWARD, jax.ffi.pycapsule(library.GlifBackward), platform="cpu")
    except AttributeError as error:
        return f"the C++ extension {library._name} is not glif-jax's kernel: {error}"
    return None


def available() -> bool:
    """True where the compiled kernel is installed and registered with XLA."""
    return _load() is None


@functools.cache
def warn_unavailable() -> None:
    """Says once per process, as a warning at first use on a CPU, that the kernel is missing
    and why (not only in pip's build log)."""
    reason = _load()
    if reason is not None and jax.default_backend() == "cpu":
        warnings.warn(
            f"glif_jax runs the GLIF time loop on its pure-XLA path on this CPU because {reason}. "
            "The numbers are the same; the compiled kernel is several times faster.",
            KernelUnavailableWarning, stacklevel=3,
        )


class KernelUnavailableWarning(UserWarning):
    """The compiled CPU kernel is not installed or cannot load; the XLA path runs instead."""


def isa() -> str | None:
    """The x86 level the kernel's loops run at, one of :data:`ISAS` (``"baseline"`` off x86-64),
    or ``None`` where the kernel is not available."""
    if _load() is not None:
        return None
    return ISAS[_library().GlifIsa()]


def why_unsupported(spike_function: surrogate_lib.Surrogate, inputs_dtype: Any, state_dtype: Any) -> str | None:
    """Why the kernel cannot run this neuron (``None`` if it can)."""
    reason = _load()
    if reason is not None:
        return reason
    if spike_function.derivative not in SURROGATES:
        return f"surrogate {spike_function.name!r} is user-registered; the kernel knows only the built-in shapes"
    if jnp.dtype(state_dtype) not in DTYPES or jnp.dtype(inputs_dtype) != jnp.dtype(state_dtype):
        return (
            f"the kernel needs float32 or float64 inputs in the state dtype; got inputs {jnp.dtype(inputs_dtype)}, "
            f"state {jnp.dtype(state_dtype)}"
        )
    return None


class _Packed(NamedTuple):
    """The kernel's operands: coefficients ``[5, C]`` and input gain ``[T, 1]`` (one per step) or ``[T, C]``."""

    coefficients: jax.Array
    input_gain: jax.Array


def _pack(coeffs, time_steps: int, channels: int, dtype) -> _Packed:
    per_channel = [
        jnp.broadcast_to(jnp.asarray(value, dtype), (channels,))
        for value in (coeffs.decay, coeffs.reset_gate, coeffs.leak, coeffs.soft_reset, coeffs.threshold)
    ]
    gain = jnp.asarray(coeffs.input_gain, dtype)
    if gain.ndim < 2:  # one gain per step for every element: not spread over the channels
        return _Packed(jnp.stack(per_channel), jnp.broadcast_to(gain, (time_steps,)).reshape(time_steps, 1))
    return _Packed(jnp.stack(per_channel), jnp.broadcast_to(gain.reshape(time_steps, -1), (time_steps, channels)))


def _placeholder(dtype) -> jax.Array:
    """Stands for an operand or result the kernel is told to ignore (a zero state or cotangent)."""
    return jnp.zeros((1, 1), dtype)


def _varying(value) -> frozenset:
    """The shard_map axes along which ``value`` varies (empty outside shard_map)."""
    return jax.typeof(value).manual_axis_type.varying


def _varying_axes(*values) -> frozenset:
    return frozenset().union(*(_varying(value) for value in jax.tree.leaves(values)))


def _vary(values, axes: frozenset):
    """Types every value as varying along ``axes`` (a foreign call's results carry no such type)."""
    def vary(value):
        missing = tuple(sorted(axes - _varying(value)))
        return jax.lax.pcast(value, missing, to="varying") if missing else value
    return jax.tree.map(vary, values)


def _forward(keep_membranes: bool, zero_initial: bool, packed: _Packed, inputs, membrane0, spike0):
    second = jax.ShapeDtypeStruct(inputs.shape if keep_membranes else (1, 1), inputs.dtype)
    call = jax.ffi.ffi_call(_FORWARD, (jax.ShapeDtypeStruct(inputs.shape, inputs.dtype), second),
                            vmap_method="broadcast_all")
    outputs = call(inputs, packed.coefficients, packed.input_gain, membrane0, spike0,
                   keep_membranes=np.int32(keep_membranes), zero_initial=np.int32(zero_initial))
    return _vary(outputs, _varying_axes(inputs, packed, membrane0, spike0))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _scan(spike_function, keep_membranes, zero_initial, packed, inputs, membrane0, spike0):
    return _forward(keep_membranes, zero_initial, packed, inputs, membrane0, spike0)


def _scan_fwd(spike_function, keep_membranes, zero_initial, packed, inputs, membrane0, spike0):
    # symbolic_zeros: every argument arrives wrapped with its `perturbed` bit; the inputs are
    # kept for the backward only where the input gain's gradient is needed (their only use there)
    gain_gradient = packed.input_gain.perturbed
    packed, inputs, membrane0, spike0 = jax.custom_derivatives.custom_vjp_primal_tree_values(
        (packed, inputs, membrane0, spike0)
    )
    spikes, membranes = _forward(True, zero_initial, packed, inputs, membrane0, spike0)
    outputs = (spikes, membranes if keep_membranes else _placeholder(inputs.dtype))
    return outputs, (packed, inputs if gain_gradient else None, membrane0, spike0, membranes)


def _scan_bwd(spike_function, keep_membranes, zero_initial, residuals, cotangents):
    packed, inputs, membrane0, spike0, membranes = residuals
    grad_spikes, grad_membranes = cotangents
    has_grad_spikes = not isinstance(grad_spikes, jax.custom_derivatives.SymbolicZero)
    has_grad_membranes = keep_membranes and not isinstance(grad_membranes, jax.custom_derivatives.SymbolicZero)
    dtype = membranes.dtype
    out_types = tuple(jax.ShapeDtypeStruct(x.shape, dtype)
                      for x in (membranes, packed.coefficients, packed.input_gain, membrane0, spike0))
    call = jax.ffi.ffi_call(_BACKWARD, out_types, vmap_method="broadcast_all")
    grad_inputs, grad_coefficients, grad_gain, grad_membrane0, grad_spike0 = call(
        _placeholder(dtype) if inputs is None else inputs, membranes, packed.coefficients, packed.input_gain,
        membrane0, spike0,
        grad_spikes.astype(dtype) if has_grad_spikes else _placeholder(dtype),
        grad_membranes.astype(dtype) if has_grad_membranes else _placeholder(dtype),
        surrogate=np.int32(SURROGATES[spike_function.derivative]),
        width=np.float64(spike_function.width),
        has_grad_spikes=np.int32(has_grad_spikes),
        has_grad_membranes=np.int32(has_grad_membranes),
        zero_initial=np.int32(zero_initial),
        gain_gradient=np.int32(inputs is not None),
    )
    if zero_initial:  # placeholders in, zeros out
        grad_membrane0, grad_spike0 = jnp.zeros_like(membrane0), jnp.zeros_like(spike0)
    grads = (_Packed(grad_coefficients, grad_gain), grad_inputs, grad_membrane0, grad_spike0)
    return _vary(grads, _varying_axes(membranes, packed, membrane0, spike0))


_scan.defvjp(_scan_fwd, _scan_bwd, symbolic_zeros=True)


def scan(coeffs, inputs: jax.Array, initial: tuple[jax.Array, jax.Array] | None,
         spike_function: surrogate_lib.Surrogate, keep_membranes: bool = True) -> tuple[jax.Array, jax.Array | None]:
    """The recurrence over time on the kernel, differentiable with ``spike_function``'s surrogate.

    Args:
      coeffs: :class:`glif_jax.neuron.Coefficients` (each ``[]`` or ``[C]``; ``input_gain``
        ``[]``, ``[T]`` or ``[T, C]``).
      inputs: ``[T, ..., C]`` in float32 or float64.
      initial: ``(membrane, spike)`` before the first step, each ``[..., C]`` in the inputs'
        dtype; ``None`` for zeros (which then are never materialised).
      keep_membranes: also return every step's membrane ``[T, ..., C]`` (else ``None``).

    Returns:
      ``spikes`` like ``inputs``, and the membranes (or ``None``).
    """
    reason = why_unsupported(spike_function, inputs.dtype,
                             inputs.dtype if initial is None else jnp.result_type(*initial))
    if reason is not None:
        raise ValueError(f"implementation='kernel': {reason}")
    time_steps, step_shape = inputs.shape[0], inputs.shape[1:]
    channels = step_shape[-1] if step_shape else 1
    rows = math.prod(step_shape[:-1]) if step_shape else 1
    packed = _pack(coeffs, time_steps, channels, inputs.dtype)
    if initial is None:
        membrane0 = spike0 = _placeholder(inputs.dtype)
    else:
        membrane0, spike0 = (jnp.reshape(value, (rows, channels)) for value in initial)
    # under shard_map: every operand varies with the inputs (the parameters' gradients are then
    # summed over the devices by the transpose of this cast, as on the XLA path)
    packed, membrane0, spike0 = _vary((packed, membrane0, spike0), _varying_axes(inputs, packed, membrane0, spike0))
    spikes, membranes = _scan(spike_function, keep_membranes, initial is None, packed,
                              inputs.reshape(time_steps, rows, channels), membrane0, spike0)
    return spikes.reshape(inputs.shape), membranes.reshape(inputs.shape) if keep_membranes else None

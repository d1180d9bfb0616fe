"""glif_jax.cpu_kernel: the compiled time loop against the equations and the XLA path (the GLIF paper's neuron equations).

tests/test_neuron.py runs the kernel against the float64 reference with the other
implementations; here: float32 bit-exactness against the recurrence evaluated in NumPy,
shapes that cross its tiles and work chunks, gradients against the XLA path, vmap, and how
``implementation="auto"`` chooses (the kernel on the CPU, never on another platform).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glif_jax import cpu_kernel, neuron, surrogate
from glif_jax.neuron import Coefficients, NeuronConfig, NeuronState, glif, glif_scan
from tests import neuron_reference
from tests.comparison import assert_bit_identical, assert_tree_close, leaf_differences

pytestmark = pytest.mark.skipif(
    not cpu_kernel.available() and shutil.which("c++") is None,
    reason="no C++ compiler here, so the kernel was not built (test_kernel_is_built covers machines with one)",
)

# (T, step shape [..., C]): channels below, at and above the kernel's run of 256 elements, a single
# row, a layer-wise scalar neuron, and enough rows for several tiles per work chunk plus a short last tile
SHAPES = [(4, (3, 5, 7)), (6, (130, 64)), (3, (2, 300)), (2, (1, 9)), (5, (1,)), (3, (32 * 70 + 5, 4))]


def test_kernel_is_built():
    """`pip install` builds the extension wherever a C++ compiler exists (else the XLA path is used)."""
    assert cpu_kernel.available(), cpu_kernel._load()


def best_isa_from_cpuinfo() -> str:
    """The x86-64 level the CPU has, read from /proc/cpuinfo's flags (psABI levels v3 and v4)."""
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    v3 = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}
    v4 = {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
    return "avx512" if v3 | v4 <= flags else "avx2" if v3 <= flags else "baseline"


needs_x86_linux = pytest.mark.skipif(
    platform.machine() != "x86_64" or not Path("/proc/cpuinfo").exists(), reason="x86-64 levels, read on Linux"
)


@needs_x86_linux
def test_isa_is_the_best_level_the_cpu_has():
    best = best_isa_from_cpuinfo()
    asked = os.environ.get(cpu_kernel.ISA_VARIABLE)
    order = cpu_kernel.ISAS
    expected = best if asked is None else order[min(order.index(best), order.index(asked))]
    assert cpu_kernel.isa() == expected


ISA_CHECK = """
import jax, jax.numpy as jnp, numpy as np
from glif_jax import cpu_kernel, surrogate
from glif_jax.neuron import NeuronState, glif_scan
from tests.comparison import assert_tree_close, leaf_differences
from tests.test_cpu_kernel import (LONG_SHAPES, STREAMED_SHAPES, SHAPES, logits_for, numpy_recurrence,
                                   random_coefficients)

assert cpu_kernel.isa() == {isa!r}, cpu_kernel.isa()
rng = np.random.default_rng(8)
for time_steps, step_shape in [*SHAPES, STREAMED_SHAPES[1], *LONG_SHAPES]:
    c = random_coefficients(rng, time_steps, step_shape[-1], np.float32)
    x = rng.normal(0.4, 0.6, (time_steps, *step_shape)).astype(np.float32)
    membrane0 = rng.normal(0.3, 0.4, step_shape).astype(np.float32)
    spike0 = (rng.uniform(size=step_shape) > 0.5).astype(np.float32)
    want = numpy_recurrence(c, x, membrane0, spike0)
    got = cpu_kernel.scan(c, jnp.asarray(x), (membrane0, spike0), surrogate.get("rectangular"))
    assert_tree_close(tuple(got), want)
    if (time_steps, step_shape) not in (SHAPES[5], STREAMED_SHAPES[1], LONG_SHAPES[1]):
        continue
    params = logits_for(rng, time_steps, step_shape[-1])
    g = rng.normal(size=x.shape).astype(np.float32)
    for name in ("rectangular", "sigmoid", "arctan", "triangle"):
        def loss(params, x, initial, implementation):
            spikes, membranes, _ = glif_scan(params, x, initial, surrogate=name, implementation=implementation)
            return jnp.sum(spikes * g) + jnp.sum(membranes * g[::-1])
        grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)
        initial = NeuronState(membrane0, spike0)
        differences = leaf_differences(grad(params, x, initial, "kernel"), grad(params, x, initial, "xla"))
        assert max(differences.values()) <= 2e-5, (name, differences)
print("same numbers at", cpu_kernel.isa())
"""


@needs_x86_linux
@pytest.mark.parametrize("isa", ["avx2", "baseline"])
def test_every_isa_level_gives_the_same_numbers(isa):
    """Each level's loops (other block widths, other instructions) against the equations and the XLA path."""
    order, best = cpu_kernel.ISAS, best_isa_from_cpuinfo()
    if order.index(isa) >= order.index(best):
        pytest.skip(f"the loops run at {isa} here anyway (the other tests)" if isa == best else f"this CPU has no {isa}")
    environment = {**os.environ, cpu_kernel.ISA_VARIABLE: isa, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(ISA_CHECK.format(isa=isa))], env=environment,
                            cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"same numbers at {isa}" in result.stdout


def test_unknown_isa_name_is_an_error(monkeypatch):
    monkeypatch.setenv(cpu_kernel.ISA_VARIABLE, "sse9")
    with pytest.raises(ValueError, match="GLIF_JAX_CPU_ISA='sse9': expected one of baseline, avx2, avx512"):
        cpu_kernel._check_isa_variable()


def random_coefficients(rng, time_steps, channels, dtype):
    per_channel = lambda low, high: rng.uniform(low, high, channels).astype(dtype)  # noqa: E731
    return Coefficients(
        decay=per_channel(0.3, 1.0), reset_gate=per_channel(0.0, 1.0), leak=per_channel(0.0, 0.2),
        input_gain=rng.uniform(0.2, 1.0, (time_steps, channels)).astype(dtype),
        soft_reset=per_channel(0.0, 0.5), threshold=per_channel(0.2, 0.8),
    )


def numpy_recurrence(c: Coefficients, x, membrane, spike):
    """The GLIF paper's neuron equations in the coefficient form, term by term in the documented order, in x's dtype."""
    one = x.dtype.type(1)
    spikes, membranes = [], []
    for t in range(x.shape[0]):
        membrane = c.decay * membrane * (one - c.reset_gate * spike) - c.leak + c.input_gain[t] * x[t] \
            - c.soft_reset * spike
        spike = (membrane - c.threshold > 0).astype(x.dtype)
        spikes.append(spike)
        membranes.append(membrane)
    return np.stack(spikes), np.stack(membranes)


@pytest.mark.parametrize("time_steps,step_shape", SHAPES)
@pytest.mark.parametrize("given_initial", [False, True])
def test_float32_bit_identical_to_numpy_recurrence(time_steps, step_shape, given_initial):
    rng = np.random.default_rng(sum(step_shape) + time_steps)
    channels = step_shape[-1]
    c = random_coefficients(rng, time_steps, channels, np.float32)
    x = rng.normal(0.4, 0.6, (time_steps, *step_shape)).astype(np.float32)
    zeros = np.zeros(step_shape, np.float32)
    membrane0 = rng.normal(0.3, 0.4, step_shape).astype(np.float32) if given_initial else zeros
    spike0 = (rng.uniform(size=step_shape) > 0.5).astype(np.float32) if given_initial else zeros
    want_spikes, want_membranes = numpy_recurrence(c, x, membrane0, spike0)
    assert 0 < want_spikes.mean() < 1
    initial = (jnp.asarray(membrane0), jnp.asarray(spike0)) if given_initial else None
    spikes, membranes = jax.jit(
        lambda c, x, initial: cpu_kernel.scan(c, x, initial, surrogate.get("rectangular"))
    )(c, x, initial)
    assert_bit_identical((spikes, membranes), (want_spikes, want_membranes))
    only_spikes, no_membranes = cpu_kernel.scan(c, jnp.asarray(x), initial, surrogate.get("rectangular"),
                                                keep_membranes=False)
    assert no_membranes is None
    assert_bit_identical(only_spikes, want_spikes)


# Outputs of at least 1 MiB go to memory with non-temporal stores, 16 bytes at a time where aligned:
# every run aligned (C = 64); runs of 250 elements, every other one 8 bytes off (C = 10); and an odd
# number of elements per step, so that no step after the first is aligned (no streaming at all).
STREAMED_SHAPES = [(2, (2049, 64)), (3, (9000, 10)), (3, (29129, 3))]


@pytest.mark.parametrize("time_steps,step_shape", STREAMED_SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_outputs_bit_identical_to_numpy_recurrence(time_steps, step_shape, dtype):
    rng = np.random.default_rng(time_steps)
    c = random_coefficients(rng, time_steps, step_shape[-1], dtype)
    x = rng.normal(0.4, 0.6, (time_steps, *step_shape)).astype(dtype)
    membrane0 = rng.normal(0.3, 0.4, step_shape).astype(dtype)
    spike0 = (rng.uniform(size=step_shape) > 0.5).astype(dtype)
    assert x.size * 4 >= 1 << 20
    with jax.enable_x64(dtype == np.float64):
        zeros = np.zeros(step_shape, dtype)
        for membrane, spike, initial in ((zeros, zeros, None), (membrane0, spike0, (membrane0, spike0))):
            want_spikes, want_membranes = numpy_recurrence(c, x, membrane, spike)
            spikes, membranes = cpu_kernel.scan(c, jnp.asarray(x), initial, surrogate.get("rectangular"))
            assert spikes.dtype == dtype
            assert_bit_identical((spikes, membranes), (want_spikes, want_membranes))
            only_spikes, _ = cpu_kernel.scan(c, jnp.asarray(x), initial, surrogate.get("rectangular"),
                                             keep_membranes=False)
            assert_bit_identical(only_spikes, want_spikes)


def logits_for(rng, time_steps, channels):
    params = {name: rng.uniform(-1.5, 1.5, channels).astype(np.float32) for name in neuron.PARAM_NAMES}
    params["cond"] = rng.uniform(-1.5, 1.5, (time_steps, channels)).astype(np.float32)
    params["v_th"] = np.full(channels, -1.0, np.float32)  # v_th ~ 0.27: plenty of spikes
    return params


@pytest.mark.parametrize("time_steps,step_shape", [SHAPES[1], SHAPES[2], SHAPES[5], *STREAMED_SHAPES[:2]])
@pytest.mark.parametrize("surrogate_name", ["rectangular", "sigmoid", "arctan", "triangle"])
def test_float32_gradients_match_xla_path(time_steps, step_shape, surrogate_name):
    """Every gradient (logits, inputs, initial state) through spikes and membranes, to float32 rounding."""
    rng = np.random.default_rng(3)
    params = logits_for(rng, time_steps, step_shape[-1])
    x = rng.normal(0.4, 0.8, (time_steps, *step_shape)).astype(np.float32)
    initial = NeuronState(rng.normal(0.2, 0.3, step_shape).astype(np.float32),
                          (rng.uniform(size=step_shape) > 0.5).astype(np.float32))
    g_spikes, g_membranes = (rng.normal(size=x.shape).astype(np.float32) for _ in range(2))

    def loss(params, x, initial, implementation):
        spikes, membranes, _ = glif_scan(params, x, initial, surrogate=surrogate_name, implementation=implementation)
        return jnp.sum(spikes * g_spikes) + jnp.sum(membranes * g_membranes)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)
    want = grad(params, x, initial, "xla")
    got = grad(params, x, initial, "kernel")
    differences = leaf_differences(got, want)  # each leaf relative to its own largest expected value
    assert max(differences.values()) <= 2e-5, differences


def test_gradient_of_spikes_only_skips_membranes():
    """glif() returns spikes only; its gradient (no membrane cotangent, zero initial state) still matches."""
    rng = np.random.default_rng(4)
    params = logits_for(rng, 4, 16)
    x = rng.normal(0.4, 0.8, (4, 300, 16)).astype(np.float32)
    weights = rng.normal(size=x.shape).astype(np.float32)
    grad = jax.jit(jax.grad(lambda p, x, impl: jnp.sum(glif(p, x, implementation=impl) * weights), argnums=(0, 1)),
                   static_argnums=2)
    want, got = grad(params, x, "xla"), grad(params, x, "kernel")
    assert_tree_close(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("time_steps,step_shape", STREAMED_SHAPES[:2])
def test_float64_gradients_of_large_problems_match_xla_path(time_steps, step_shape):
    """Large enough for the streamed input gradient: float64 agrees to float64 rounding."""
    rng = np.random.default_rng(7)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda v: v.astype(np.float64), logits_for(rng, time_steps, step_shape[-1]))
        x = rng.normal(0.4, 0.8, (time_steps, *step_shape))
        initial = NeuronState(rng.normal(0.2, 0.3, step_shape), (rng.uniform(size=step_shape) > 0.5) * 1.0)
        g_spikes = rng.normal(size=x.shape)

        def loss(params, x, initial, implementation):
            spikes, _, _ = glif_scan(params, x, initial, implementation=implementation)
            return jnp.sum(spikes * g_spikes)

        grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)
        want, got = grad(params, x, initial, "xla"), grad(params, x, initial, "kernel")
        assert {leaf.dtype for leaf in jax.tree.leaves(got)} == {np.dtype(np.float64)}
        differences = leaf_differences(got, want)  # each leaf relative to its own largest expected value
        assert max(differences.values()) <= 1e-11, differences


# Longer than one segment of the kernel's time loop (16 steps), whole or not: a Linear layer's
# single row of wide channels (cut into slabs, the last one ending mid-line), a few narrow rows, and
# many rows of wide channels (slabs and groups of rows)
LONG_SHAPES = [(40, (1, 1030)), (33, (3, 5, 7)), (20, (40, 520))]


@pytest.mark.parametrize("time_steps,step_shape", LONG_SHAPES)
@pytest.mark.parametrize("gain", ["per element", "per step", "one"])
def test_long_and_wide_bit_identical_to_numpy_recurrence(time_steps, step_shape, gain):
    """Float32 spikes and membranes of long series, with an input gain per element ([T, C]),
    per step ([T]: layer-wise GLIF) or one for all ([]: LIF)."""
    rng = np.random.default_rng(time_steps)
    c = random_coefficients(rng, time_steps, step_shape[-1], np.float32)
    if gain != "per element":
        c = c._replace(input_gain=c.input_gain[:, 0] if gain == "per step" else np.float32(0.7))
    x = rng.normal(0.4, 0.6, (time_steps, *step_shape)).astype(np.float32)
    membrane0 = rng.normal(0.3, 0.4, step_shape).astype(np.float32)
    spike0 = (rng.uniform(size=step_shape) > 0.5).astype(np.float32)
    per_step = c._replace(input_gain=np.broadcast_to(c.input_gain, (time_steps,)) if gain == "one" else c.input_gain)
    want = numpy_recurrence(per_step, x, membrane0, spike0)
    assert 0 < want[0].mean() < 1
    got = jax.jit(lambda c, x, initial: cpu_kernel.scan(c, x, initial, surrogate.get("rectangular")))(
        c, x, (membrane0, spike0))
    assert_tree_close(tuple(got), want)


NEURONS = {  # name: (kind, layer-wise, static gates and primitives); LIF's input gain is a constant
    "glif channel-wise": ("glif", False, False),
    "glif layer-wise": ("glif", True, False),
    "lif": ("lif", True, False),
    "glif, static parameters": ("glif", False, True),  # a [T, C] input gain without a gradient
}


@pytest.mark.parametrize("time_steps,step_shape", LONG_SHAPES)
@pytest.mark.parametrize("neuron_name", list(NEURONS))
def test_long_and_wide_float64_gradients_match_reference(time_steps, step_shape, neuron_name):
    """Every gradient of long series in float64 (sigmoid surrogate: the kernel's own exp) against
    the independent reference, for each kind of input gain, with and without its gradient."""
    kind, layer_wise, static = NEURONS[neuron_name]
    rng = np.random.default_rng(len(step_shape) + time_steps)
    logits = {name: value.astype(np.float64) for name, value in logits_for(rng, time_steps, step_shape[-1]).items()
              if name in neuron_reference.KIND_NAMES[kind]}
    if layer_wise:
        logits = {name: value[:, 0] if name == "cond" else value[0] for name, value in logits.items()}
    x = rng.normal(0.4, 0.8, (time_steps, *step_shape))
    membrane0, spike0 = rng.normal(0.2, 0.3, step_shape), (rng.uniform(size=step_shape) > 0.5) * 1.0
    grad_spikes, grad_membranes = rng.normal(size=x.shape), rng.normal(size=x.shape)
    options = {"kind": kind, "static_gates": static, "static_primitives": static, "surrogate": "sigmoid",
               "surrogate_width": 4.0}

    def loss(params, x, initial):
        spikes, membranes, _ = glif_scan(params, x, initial, implementation="kernel", **options)
        return jnp.sum(spikes * grad_spikes) + jnp.sum(membranes * grad_membranes)

    with jax.enable_x64(True):
        got = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(logits, x, NeuronState(membrane0, spike0))
    want_logits, want_inputs, want_membrane0, want_spike0 = neuron_reference.backward(
        logits, x, grad_spikes, grad_membranes, kind, static_gates=static, static_primitives=static,
        surrogate="sigmoid", width=4.0, u0=membrane0, o0=spike0)
    want = (want_logits, want_inputs, NeuronState(want_membrane0, want_spike0))
    assert_tree_close(got, want, rtol=1e-9, atol=1e-9 * max(np.max(np.abs(leaf)) for leaf in jax.tree.leaves(want)))


def test_vmap_over_parameters_and_inputs_equals_loop():
    """vmap batches every operand of the kernel (per-example parameters too): it equals a loop."""
    rng = np.random.default_rng(5)
    params = [logits_for(rng, 3, 8) for _ in range(3)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *params)
    x = rng.normal(0.4, 0.8, (3, 3, 10, 8)).astype(np.float32)

    def loss(p, xb):
        return jnp.sum(glif(p, xb, implementation="kernel") * jnp.arange(xb.size).reshape(xb.shape) / xb.size)

    mapped = jax.vmap(lambda p, xb: glif(p, xb, implementation="kernel"))(stacked, x)
    looped = np.stack([np.asarray(glif(p, xb, implementation="kernel")) for p, xb in zip(params, x)])
    assert_tree_close(mapped, looped)
    grads = jax.vmap(jax.grad(loss))(stacked, x)
    for i, p in enumerate(params):
        assert_tree_close(jax.tree.map(lambda leaf: leaf[i], grads), jax.grad(loss)(p, jnp.asarray(x[i])),
                          rtol=1e-6, atol=1e-7)


def compiled_text(function, *args) -> str:
    return jax.jit(function).lower(*args).compile().as_text()


def test_auto_uses_the_kernel_on_cpu_and_xla_elsewhere():
    rng = np.random.default_rng(6)
    params = logits_for(rng, 4, 8)
    x = jnp.asarray(rng.normal(size=(4, 5, 8)).astype(np.float32))
    grad = jax.grad(lambda p, x: jnp.sum(glif(p, x)))
    assert NeuronConfig().implementation == "auto"
    text = compiled_text(grad, params, x)
    assert "glif_jax_cpu_forward" in text and "glif_jax_cpu_backward" in text
    assert "glif_jax_cpu" not in compiled_text(lambda p, x: glif(p, x, implementation="xla"), params, x)
    for accelerator in ("cuda", "tpu"):
        lowered = jax.jit(grad).trace(params, x).lower(lowering_platforms=(accelerator,)).as_text()
        assert "glif_jax_cpu" not in lowered, accelerator


def test_auto_falls_back_where_the_kernel_cannot_run():
    """A user-registered surrogate or bfloat16 state runs on the XLA path; 'kernel' says why it can't."""
    surrogate.register("test_gaussian", lambda x, width: jnp.exp(-(x / width) ** 2), 0.5)
    rng = np.random.default_rng(7)
    params = logits_for(rng, 3, 4)
    x = jnp.asarray(rng.normal(size=(3, 2, 4)).astype(np.float32))
    auto = jax.grad(lambda x: jnp.sum(glif(params, x, surrogate="test_gaussian")))(x)
    xla = jax.grad(lambda x: jnp.sum(glif(params, x, surrogate="test_gaussian", implementation="xla")))(x)
    assert_tree_close(auto, xla)
    with pytest.raises(ValueError, match="implementation='kernel'.*user-registered"):
        glif(params, x, surrogate="test_gaussian", implementation="kernel")
    with pytest.raises(ValueError, match="implementation='kernel'.*float32 or float64"):
        glif(params, x.astype(jnp.bfloat16), implementation="kernel")
    assert_tree_close(glif(params, x, state_dtype="bfloat16"),
                      glif(params, x, state_dtype="bfloat16", implementation="xla"))


def test_a_missing_kernel_is_said_once_at_first_use(monkeypatch):
    """Without the compiled extension, the first CPU use warns once, naming why, and the same
    numbers come from the XLA path; a kernel that can run never warns."""
    reason = "the C++ extension glif_jax._glif_cpu is not built (test)"
    monkeypatch.setattr(cpu_kernel, "_load", lambda: reason)
    cpu_kernel.warn_unavailable.cache_clear()
    rng = np.random.default_rng(8)
    params = logits_for(rng, 3, 4)
    x = jnp.asarray(rng.normal(size=(3, 2, 4)).astype(np.float32))
    with pytest.warns(cpu_kernel.KernelUnavailableWarning, match="pure-XLA path .*not built \\(test\\)"):
        spikes = glif(params, x)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        glif(params, x + 1)   # once per process
    assert_tree_close(spikes, glif(params, x, implementation="xla"))
    monkeypatch.undo()
    cpu_kernel.warn_unavailable.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        glif(params, x)

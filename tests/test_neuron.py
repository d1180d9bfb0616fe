"""glif_jax.neuron against an independent NumPy reference of the GLIF paper's neuron equations (tests/neuron_reference.py)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glif_jax import cpu_kernel, neuron
from glif_jax.neuron import NeuronConfig, NeuronState, glif, glif_scan, glif_step
from tests import neuron_reference as ref

BATCH, CHANNELS = 3, 4
# (kind, gates, static_gates): every gate mode of the GLIF paper's neuron equations plus GLIF_f and LIF.
VARIANTS = [
    ("glif", "soft", False),
    ("glif", "hard", False),
    ("glif", "soft", True),
    ("glif", "hard", True),
    ("glif_f", "soft", False),
    ("lif", "soft", False),
]
REGIMES = ("silent", "bursting", "near_threshold")


def make_logits(kind, time_steps, channel_wise, seed):
    """Logits around the CIFAR preset; gates spread widely so that hard gates hit 0 and 1."""
    rng = np.random.default_rng(seed)
    shape = (CHANNELS,) if channel_wise else ()
    centre = {"tau": 0.25, "lam": 0.0625, "v_th": 0.5, "v_re": 0.5, "cond": 0.5}
    logits = {}
    for name in ref.KIND_NAMES[kind]:
        full = (time_steps, *shape) if name == "cond" else shape
        if name in ref.GATES:
            logits[name] = rng.normal(0.0, 1.5, full)
        else:
            c = centre[name]
            logits[name] = np.log(c / (1 - c)) + rng.normal(0.0, 0.3, full)
    return logits


def make_inputs(regime, time_steps, seed):
    rng = np.random.default_rng(seed + 1000)
    shape = (time_steps, BATCH, 2, CHANNELS)
    if regime == "silent":
        return rng.normal(-0.5, 0.05, shape)
    if regime == "bursting":
        return rng.normal(3.0, 0.5, shape)
    return rng.uniform(0.2, 1.5, shape)


def as_jax(tree, dtype):
    return jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)


CASES = list(itertools.product(VARIANTS, (1, 2, 6), (True, False)))
# "auto" is one of these on any platform (the kernel on the CPU; tests/test_cpu_kernel.py checks
# which); the kernel is left out only where it could not be built (test_kernel_is_built)
IMPLEMENTATIONS = ("xla", "autodiff") + (("kernel",) if cpu_kernel.available() else ())


@pytest.mark.parametrize("variant,time_steps,channel_wise", CASES)
def test_forward_matches_reference_float64(variant, time_steps, channel_wise):
    """The GLIF paper's neuron equations: spikes bit-for-bit and membranes to 1e-12, in every regime, every implementation."""
    kind, gates, static_gates = variant
    logits = make_logits(kind, time_steps, channel_wise, seed=time_steps)
    fired = {}
    with jax.enable_x64(True):
        for regime in REGIMES:
            x = make_inputs(regime, time_steps, seed=time_steps)
            want_spikes, want_membranes = ref.forward(logits, x, kind, gates)
            fired[regime] = want_spikes.mean()
            for implementation in IMPLEMENTATIONS:
                spikes, membranes, final = glif_scan(
                    as_jax(logits, jnp.float64), jnp.asarray(x), kind=kind, gates=gates,
                    static_gates=static_gates, implementation=implementation,
                )
                assert spikes.dtype == jnp.float64
                np.testing.assert_array_equal(np.asarray(spikes), want_spikes, err_msg=f"{regime} {implementation}")
                np.testing.assert_allclose(np.asarray(membranes), want_membranes, rtol=1e-12, atol=1e-12)
                np.testing.assert_array_equal(np.asarray(final.spike), want_spikes[-1])
                np.testing.assert_allclose(np.asarray(final.membrane), want_membranes[-1], rtol=1e-12)
    assert fired["silent"] == 0.0
    assert fired["bursting"] > 0.5
    if time_steps > 1:
        assert 0.0 < fired["near_threshold"] < 1.0


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_float32_agrees_with_reference(variant):
    """float32 membranes match the float64 reference; spikes agree wherever u is not within 1e-4 of v_th."""
    kind, gates, static_gates = variant
    logits = make_logits(kind, 6, True, seed=7)
    x = make_inputs("near_threshold", 6, seed=7)
    want_spikes, want_membranes = ref.forward(logits, x, kind, gates)
    spikes, membranes, _ = glif_scan(as_jax(logits, jnp.float32), jnp.asarray(x, jnp.float32), kind=kind, gates=gates)
    np.testing.assert_allclose(np.asarray(membranes), want_membranes, rtol=1e-5, atol=1e-5)
    v_th = ref.sigmoid(logits["v_th"])
    clear = np.abs(want_membranes - v_th) > 1e-4
    # a spike flip changes later membranes; compare only up to the first ambiguous step
    first_ambiguous = int(np.argmax(~clear.reshape(6, -1).all(1))) if not clear.all() else 6
    np.testing.assert_array_equal(np.asarray(spikes)[:first_ambiguous], want_spikes[:first_ambiguous])


GRAD_CASES = [
    (variant, surrogate, channel_wise)
    for variant in VARIANTS
    for surrogate, channel_wise in (("rectangular", True), ("sigmoid", False), ("arctan", True), ("triangle", True))
]


@pytest.mark.parametrize("variant,surrogate,channel_wise", GRAD_CASES)
def test_gradients_match_hand_written_bptt(variant, surrogate, channel_wise):
    """The GLIF paper's neuron equations surrogate gradients: jax.grad through the scan = hand-written BPTT of the reference.

    Covers every parameter, the inputs and the initial state; the loss weights spikes and
    membranes so that both the spike path and the reset paths through o_prev carry gradient.
    """
    kind, gates, static_gates = variant
    time_steps = 6
    logits = make_logits(kind, time_steps, channel_wise, seed=11)
    rng = np.random.default_rng(12)
    x = np.concatenate([make_inputs("near_threshold", 3, 13), make_inputs("bursting", 3, 14)])
    grad_spikes = rng.normal(size=x.shape)
    grad_membranes = rng.normal(size=x.shape)
    u0 = rng.normal(0.3, 0.3, x.shape[1:])
    o0 = (rng.uniform(size=x.shape[1:]) > 0.5).astype(np.float64)
    want = ref.backward(
        logits, x, grad_spikes, grad_membranes, kind, gates, static_gates, False, surrogate, None, u0, o0
    )
    want_spikes, _ = ref.forward(logits, x, kind, gates, u0, o0)
    assert 0 < want_spikes.mean() < 1, "the test needs both spikes and silence"
    with jax.enable_x64(True):
        for implementation in IMPLEMENTATIONS:
            def loss(params, inputs, membrane0, spike0):
                spikes, membranes, _ = glif_scan(
                    params, inputs, NeuronState(membrane0, spike0), kind=kind, gates=gates,
                    static_gates=static_gates, surrogate=surrogate, implementation=implementation,
                )
                return jnp.sum(spikes * grad_spikes) + jnp.sum(membranes * grad_membranes)

            got = jax.grad(loss, argnums=(0, 1, 2, 3))(as_jax(logits, jnp.float64), jnp.asarray(x),
                                                        jnp.asarray(u0), jnp.asarray(o0))
            for name in logits:
                np.testing.assert_allclose(np.asarray(got[0][name]), want[0][name], rtol=1e-9, atol=1e-12,
                                           err_msg=f"{name} ({implementation})")
            for index, label in ((1, "inputs"), (2, "initial membrane"), (3, "initial spike")):
                np.testing.assert_allclose(np.asarray(got[index]), want[index], rtol=1e-9, atol=1e-12,
                                           err_msg=f"{label} ({implementation})")
    assert any(np.any(want[0][name] != 0) for name in want[0])


def test_static_primitives_get_no_gradient_but_gates_do():
    """The GLIF paper's ablation switch: static primitives stop the gradient at the primitives only."""
    logits = make_logits("glif", 4, True, seed=3)
    x = jnp.asarray(make_inputs("near_threshold", 4, 3), jnp.float32)
    grads = jax.grad(lambda p: jnp.sum(glif(p, x, static_primitives=True)))(as_jax(logits, jnp.float32))
    for name in ref.PRIMITIVES:
        assert not np.any(np.asarray(grads[name])), name
    assert any(np.any(np.asarray(grads[name])) for name in ref.GATES)


def test_step_function_iterated_by_hand_equals_scan():
    """glif_step is the one step that the scan iterates: a Python loop over it gives glif's spikes."""
    logits = as_jax(make_logits("glif", 5, True, seed=5), jnp.float32)
    x = jnp.asarray(make_inputs("near_threshold", 5, 5), jnp.float32)
    state = neuron.initial_state(x.shape[1:])
    spikes = []
    for t in range(5):
        state, spike = glif_step(state, logits, x[t], t)
        assert spike.shape == x.shape[1:]
        spikes.append(spike)
    np.testing.assert_array_equal(np.stack(spikes), np.asarray(glif(logits, x)))


def test_streaming_in_chunks_equals_one_pass():
    """The final state continues a stream: two chunks of 3 steps = one run of 6."""
    logits = as_jax(make_logits("glif", 6, True, seed=6), jnp.float32)
    x = jnp.asarray(make_inputs("near_threshold", 6, 6), jnp.float32)
    whole, _, _ = glif_scan(logits, x)
    first_params = dict(logits, cond=logits["cond"][:3])
    second_params = dict(logits, cond=logits["cond"][3:])
    first, _, state = glif_scan(first_params, x[:3])
    second, _, _ = glif_scan(second_params, x[3:], state)
    np.testing.assert_array_equal(np.concatenate([first, second]), np.asarray(whole))


# ---------------------------------------------------------------- transformations


@pytest.fixture(scope="module")
def problem():
    logits = as_jax(make_logits("glif", 4, True, seed=21), jnp.float32)
    x = jnp.asarray(make_inputs("near_threshold", 4, 21), jnp.float32)
    return logits, x


def loss_fn(params, inputs, implementation="xla"):
    weights = jnp.linspace(-1.0, 1.0, inputs.size).reshape(inputs.shape)
    return jnp.sum(glif(params, inputs, implementation=implementation) * weights)


def test_jit_equals_eager(problem):
    params, x = problem
    np.testing.assert_array_equal(np.asarray(jax.jit(glif)(params, x)), np.asarray(glif(params, x)))
    eager = jax.grad(loss_fn)(params, x)
    jitted = jax.jit(jax.grad(loss_fn))(params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), jitted, eager)


def test_vmap_over_batch_equals_loop(problem):
    params, x = problem
    per_example = jnp.moveaxis(x, 1, 0)  # [B, T, 2, C]
    mapped = jax.vmap(lambda xb: glif(params, xb))(per_example)
    looped = jnp.stack([glif(params, xb) for xb in per_example])
    np.testing.assert_array_equal(np.asarray(mapped), np.asarray(looped))
    grads_mapped = jax.grad(lambda p: jnp.sum(jax.vmap(lambda xb: loss_fn(p, xb))(per_example)))(params)
    grads_looped = jax.grad(lambda p: sum(loss_fn(p, xb) for xb in per_example))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), grads_mapped, grads_looped)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_grad_under_checkpoint_equals_without(problem, implementation):
    params, x = problem
    plain = jax.grad(loss_fn, argnums=(0, 1))(params, x, implementation)
    remat = jax.grad(jax.checkpoint(loss_fn, static_argnums=(2,)), argnums=(0, 1))(params, x, implementation)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), remat, plain)


def test_shard_map_over_batch_equals_unsharded(problem):
    params, x = problem
    mesh = jax.make_mesh((1,), ("batch",))
    spec = jax.sharding.PartitionSpec(None, "batch")
    sharded = jax.shard_map(lambda xb: glif(params, xb), mesh=mesh, in_specs=spec, out_specs=spec)
    x_sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, spec))
    np.testing.assert_array_equal(np.asarray(jax.jit(sharded)(x_sharded)), np.asarray(glif(params, x)))


def test_pmap_equals_unmapped(problem):
    params, x = problem
    mapped = jax.pmap(lambda xb: glif(params, xb))(x[None])
    np.testing.assert_array_equal(np.asarray(mapped[0]), np.asarray(glif(params, x)))


def test_bfloat16_inputs_keep_float32_state(problem):
    """bfloat16 in, bfloat16 spikes out; the membrane is float32, so spikes equal a float32 run on the same values."""
    params, x = problem
    x16 = x.astype(jnp.bfloat16)
    spikes, membranes, _ = glif_scan(params, x16)
    assert spikes.dtype == jnp.bfloat16 and membranes.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(spikes, np.float32), np.asarray(glif(params, x16.astype(jnp.float32))))
    grads = jax.grad(lambda xb: jnp.sum(glif(params, xb) * 1.5))(x16)
    assert grads.dtype == jnp.bfloat16
    _, membranes16, _ = glif_scan(params, x16, state_dtype="bfloat16")
    assert membranes16.dtype == jnp.bfloat16


# ---------------------------------------------------------------- bad input


def test_time_length_must_match_cond(problem):
    params, x = problem
    with pytest.raises(ValueError, match=r"params\['cond'\].*time length 3"):
        glif(params, x[:3])


def test_channel_count_must_match(problem):
    params, x = problem
    with pytest.raises(ValueError, match=r"params\['alpha'\].*channel"):
        glif(dict(params, alpha=jnp.zeros(CHANNELS + 1)), x)
    with pytest.raises(ValueError, match=r"params\['cond'\]"):
        glif(dict(params, cond=jnp.zeros((4, CHANNELS + 1))), x)


def test_missing_and_unknown_parameter_names(problem):
    params, x = problem
    without_gamma = {k: v for k, v in params.items() if k != "gamma"}
    with pytest.raises(ValueError, match=r"missing \['gamma'\]"):
        glif(without_gamma, x)
    with pytest.raises(ValueError, match=r"unknown \['threshold'\]"):
        glif(dict(params, threshold=jnp.zeros(CHANNELS)), x)
    with pytest.raises(ValueError, match=r"neuron 'lif' needs exactly \('tau', 'v_th'\)"):
        glif(params, x, kind="lif")
    with pytest.raises(TypeError, match="params: expected a mapping"):
        glif([1, 2], x)


def test_non_floating_inputs(problem):
    params, x = problem
    with pytest.raises(TypeError, match="inputs: expected a floating dtype"):
        glif(params, (x > 0.5).astype(jnp.int32))


def test_bad_options():
    with pytest.raises(ValueError, match="gates"):
        NeuronConfig(gates="medium")
    with pytest.raises(ValueError, match="kind"):
        NeuronConfig(kind="izhikevich")
    with pytest.raises(ValueError, match="surrogate"):
        NeuronConfig(surrogate="nope")
    with pytest.raises(ValueError, match="surrogate_width"):
        NeuronConfig(surrogate_width=-1.0)
    with pytest.raises(ValueError, match="implementation"):
        NeuronConfig(implementation="scan")


def test_fused_is_a_deprecated_name_of_xla(problem):
    """``implementation="fused"`` (the XLA path's earlier name) warns and is ``"xla"`` in every respect."""
    params, x = problem
    with pytest.warns(DeprecationWarning, match="'fused' is deprecated.*'xla'"):
        config = NeuronConfig(implementation="fused")
    assert config == NeuronConfig(implementation="xla") and hash(config) == hash(NeuronConfig(implementation="xla"))
    assert "fused" not in neuron.IMPLEMENTATIONS
    with pytest.warns(DeprecationWarning):
        spikes = glif(params, x, implementation="fused")
    np.testing.assert_array_equal(spikes, glif(params, x, implementation="xla"))


def test_initial_state_shape_is_checked(problem):
    params, x = problem
    with pytest.raises(ValueError, match="initial.membrane"):
        glif_scan(params, x, NeuronState(jnp.zeros((1, CHANNELS)), jnp.zeros((1, CHANNELS))))


def test_constrained_tree_applies_sigmoid_to_neurons_only(problem):
    params, _ = problem
    tree = {"conv": {"kernel": jnp.ones((3, 3))}, "block": {"glif": params}}
    out = neuron.constrained_tree(tree)
    np.testing.assert_array_equal(out["conv"]["kernel"], tree["conv"]["kernel"])
    for name, logit in params.items():
        np.testing.assert_allclose(out["block"]["glif"][name], ref.sigmoid(np.asarray(logit)), rtol=1e-6)


def test_neuron_scopes_finds_each_layer_by_path_in_tree_order(problem):
    """Only mappings of one neuron's parameters and nothing else are GLIF layers."""
    params, _ = problem
    lif = {"tau": params["tau"], "v_th": params["v_th"]}
    tree = {"b": {"glif": params}, "conv": {"kernel": jnp.ones(3), "beta": jnp.ones(3)},
            "norm": {"beta": jnp.ones(3), "gamma": jnp.ones(3)}, "a": lif, "extended": {**params, "syn": jnp.ones(4)}}
    scopes = neuron.neuron_scopes(tree)
    assert list(scopes) == ["b/glif", "a"]
    assert scopes["b/glif"] is params and scopes["a"] is lif
    assert list(neuron.neuron_scopes(params)) == [""]
    assert neuron.neuron_scopes({"conv": {"kernel": jnp.ones(3)}}) == {}

"""glif_jax.neurons: the public neuron interface, the shared time loop, the registry and the baselines.

The built-in PLIF and adaptive LIF are checked against float64 NumPy restatements of their
equations (tests/neurons_reference.py); a user's neuron written with the interface against the
library's own LIF; the library's scan with its rematerialised backward against plain autodiff.
"""

from __future__ import annotations

import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glif_jax import neurons
from glif_jax.errors import OptionError
from glif_jax.neurons import MembraneState, Neuron, NeuronConfig, Parameter, Uniform
from tests import neurons_reference as reference

T, B, C = 6, 3, 5


def logit(value):
    return np.log(value / (1 - value))


@pytest.fixture(scope="module")
def inputs():
    return jax.random.uniform(jax.random.PRNGKey(0), (T, B, C), jnp.float32, -0.5, 2.0)


def my_lif_step(state, params, inputs_t, time_step, *, gain=1.0):
    membrane = params["tau"] * state.membrane * (1 - state.spike) + gain * inputs_t
    spikes = neurons.spike(membrane - params["v_th"])
    return MembraneState(membrane, spikes), spikes


MY_LIF = Neuron("test_my_lif", my_lif_step, (Parameter("tau", 0.25), Parameter("v_th", 0.5)))


# ---- the interface ---------------------------------------------------------------------------
def test_parameter_specifications_are_checked():
    with pytest.raises(ValueError, match="name must be an identifier"):
        Parameter("v th", 0.5)
    with pytest.raises(ValueError, match="constraint must be one of"):
        Parameter("tau", 0.5, constraint="tanh")
    with pytest.raises(ValueError, match="group must be one of"):
        Parameter("tau", 0.5, group="thresholds")
    with pytest.raises(ValueError, match="outside the values of its sigmoid constraint"):
        Parameter("tau", 1.5)
    assert Parameter("w", 2.0, constraint="softplus").raw_value(2.0) == pytest.approx(np.log(np.expm1(2.0)))
    assert Parameter("cond", 0.5, per_time_step=True).shape(7, 4) == (4, 7)
    assert Parameter("cond", 0.5, per_time_step=True).shape(None, 4) == (4,)
    assert Parameter("scale", 0.5, per_channel=False).shape(7, 4) == ()


def test_neuron_definitions_are_checked():
    with pytest.raises(ValueError, match=r"parameter names \['tau'\] appear more than once"):
        Neuron("twice", my_lif_step, (Parameter("tau", 0.2), Parameter("tau", 0.3)))
    with pytest.raises(ValueError, match="backward must be one of"):
        Neuron("bad", my_lif_step, (Parameter("tau", 0.2),), backward="custom")
    with pytest.raises(ValueError, match=r"has no option\(s\) \['gian'\]; its options: gain"):
        Neuron("typo", my_lif_step, (Parameter("tau", 0.2),), options={"gian": 2.0})

    def needs_default(state, params, inputs_t, time_step, *, gain):
        return state, inputs_t

    with pytest.raises(TypeError, match="'gain' needs a default"):
        Neuron("no_default", needs_default, ())


def test_options_are_keyword_arguments_and_variants_are_stable():
    assert MY_LIF.options == {"gain": 1.0}
    doubled = MY_LIF.with_options(gain=2.0)
    assert doubled is MY_LIF.with_options(gain=2.0) is doubled.with_options(gain=2.0)
    assert doubled.with_options(gain=1.0) is MY_LIF
    assert NeuronConfig(kind=MY_LIF, options={"gain": 2.0}).neuron is doubled
    with pytest.raises(OptionError, match=r"options.gian: neuron 'test_my_lif' has no option 'gian'"):
        NeuronConfig(kind=MY_LIF, options={"gian": 2.0})


def test_registry_names_close_matches_and_import_paths(tmp_path, monkeypatch):
    assert {"glif", "glif_f", "lif", "plif", "alif"} <= set(neurons.names())
    with pytest.raises(OptionError, match=r"unknown neuron 'plf'; did you mean 'plif'"):
        NeuronConfig(kind="plf")
    module = tmp_path / "user_neurons_for_test.py"
    module.write_text(textwrap.dedent("""
        from glif_jax import neurons

        def step(state, params, inputs_t, time_step):
            membrane = params["tau"] * state.membrane * (1 - state.spike) + inputs_t
            spikes = neurons.spike(membrane - params["v_th"])
            return neurons.MembraneState(membrane, spikes), spikes

        lif_copy = neurons.Neuron("lif_copy", step, (neurons.Parameter("tau", 0.25), neurons.Parameter("v_th", 0.5)))
        not_a_neuron = 3
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    config = NeuronConfig(kind="user_neurons_for_test:lif_copy")
    assert config.neuron.name == "lif_copy" and config.param_names == ("tau", "v_th")
    with pytest.raises(OptionError, match="cannot import module 'no_such_module_xyz'"):
        NeuronConfig(kind="no_such_module_xyz:neuron")
    with pytest.raises(OptionError, match="has no attribute 'missing'"):
        NeuronConfig(kind="user_neurons_for_test:missing")
    with pytest.raises(OptionError, match="'not_a_neuron' is a int, expected a glif_jax.neurons.Neuron"):
        NeuronConfig(kind="user_neurons_for_test:not_a_neuron")
    sys.modules.pop("user_neurons_for_test", None)


@pytest.fixture
def own_registry(monkeypatch):
    """The registry as it is, restored after the test (neurons registered here do not leak)."""
    from glif_jax.neurons import registry

    neurons.names()   # the built-ins loaded
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_register_refuses_a_taken_name_unless_replacing_and_jit_sees_the_replacement(own_registry, inputs):
    neuron = Neuron("test_registered_once", my_lif_step, MY_LIF.parameters)
    assert neurons.register(neuron) is neuron
    assert neurons.get("test_registered_once") is neuron
    with pytest.raises(ValueError, match="already registered"):
        neurons.register(Neuron("test_registered_once", my_lif_step, MY_LIF.parameters))
    with pytest.raises(ValueError, match="already registered"):
        neurons.register(Neuron("glif", my_lif_step, MY_LIF.parameters))
    spikes = jax.jit(neurons.run, static_argnums=2)
    params, config = lif_params(), NeuronConfig(kind="test_registered_once")
    first = spikes(params, inputs, config)

    def silent(state, params, inputs_t, time_step, *, gain=1.0):
        return state, jnp.zeros_like(inputs_t)

    neurons.register(Neuron("test_registered_once", silent, MY_LIF.parameters), replace=True)
    assert float(jnp.sum(first)) > 0
    assert float(jnp.sum(spikes(params, inputs, NeuronConfig(kind="test_registered_once")))) == 0


def test_a_kernel_is_refused_for_a_neuron_without_one():
    with pytest.raises(OptionError, match="neuron 'plif' has no compiled kernel"):
        NeuronConfig(kind="plif", implementation="kernel")


# ---- the shared loop ---------------------------------------------------------------------------
def lif_params(channels=C):
    return {"tau": jnp.full((channels,), logit(0.4), jnp.float32),
            "v_th": jnp.linspace(-0.5, 0.5, channels, dtype=jnp.float32)}


def test_a_users_neuron_is_the_librarys_lif_spike_for_spike_with_the_same_gradients(inputs):
    params = lif_params()

    def loss(p, x, config):
        spikes = neurons.run(p, x, config)
        return jnp.sum(spikes * jnp.arange(T, dtype=jnp.float32)[:, None, None])

    mine, library = NeuronConfig(kind=MY_LIF), NeuronConfig(kind="lif", implementation="xla")
    np.testing.assert_array_equal(neurons.run(params, inputs, mine), neurons.run(params, inputs, library))
    assert 0 < float(jnp.mean(neurons.run(params, inputs, mine))) < 1
    got = jax.grad(loss, argnums=(0, 1))(params, inputs, mine)
    want = jax.grad(loss, argnums=(0, 1))(params, inputs, library)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_the_rematerialised_backward_equals_plain_autodiff_and_keeps_only_states(inputs):
    params = lif_params()
    config = NeuronConfig(kind=MY_LIF)

    def loss(p, x, implementation):
        return jnp.sum(jnp.sin(neurons.run(p, x, NeuronConfig(kind=MY_LIF, implementation=implementation)) * x))

    remat = jax.grad(loss, argnums=(0, 1))(params, inputs, "auto")
    plain = jax.grad(loss, argnums=(0, 1))(params, inputs, "autodiff")
    for a, b in zip(jax.tree.leaves(remat), jax.tree.leaves(plain)):
        np.testing.assert_array_equal(a, b)
    assert config.neuron.backward == "remat"


def test_the_backward_keeps_only_the_inputs_and_each_steps_state(inputs):
    from jax._src.ad_checkpoint import saved_residuals

    def busy_step(state, params, inputs_t, time_step):   # many intermediates per step
        drive = jnp.sin(inputs_t) * jnp.cos(state.membrane) + jnp.tanh(inputs_t * params["tau"])
        membrane = params["tau"] * state.membrane * (1 - state.spike) + drive * jnp.exp(-inputs_t ** 2)
        spikes = neurons.spike(membrane - params["v_th"])
        return MembraneState(membrane, spikes), spikes

    busy = Neuron("test_busy", busy_step, MY_LIF.parameters)

    def per_step_residuals(implementation):
        loss = lambda p, x: jnp.sum(neurons.run(p, x, NeuronConfig(kind=busy, implementation=implementation)))  # noqa: E731
        return [r for r in saved_residuals(loss, lif_params(), inputs) if tuple(r[0].shape) == inputs.shape]

    assert len(per_step_residuals("auto")) == 3            # the inputs, every step's membrane and spike
    assert len(per_step_residuals("autodiff")) > 6         # plain autodiff keeps the step's intermediates


def test_layer_wise_parameters_and_per_time_step_parameters(inputs):
    def step(state, params, inputs_t, time_step):
        membrane = state.membrane * params["decay"] + params["gain"][time_step] * inputs_t
        spikes = neurons.spike(membrane - 1.0)
        return MembraneState(membrane * (1 - spikes), spikes), spikes

    neuron = Neuron("test_timed", step, (Parameter("decay", 0.5), Parameter("gain", 0.5, per_time_step=True)))
    gains = np.linspace(0.1, 0.9, T)
    params = {"decay": jnp.asarray(logit(0.5), jnp.float32), "gain": jnp.asarray(logit(gains), jnp.float32)}
    spikes = np.asarray(neurons.run(params, inputs, NeuronConfig(kind=neuron)))
    x = np.asarray(inputs, np.float64)
    u, want = np.zeros((B, C)), []
    for t in range(T):
        u = u * 0.5 + np.float32(gains[t]) * x[t]
        o = (u - 1.0 > 0).astype(np.float64)
        want.append(o)
        u = u * (1 - o)
    np.testing.assert_array_equal(spikes, np.stack(want))
    with pytest.raises(ValueError, match=r"params\['gain'\]: its leading axis is time .* 6"):
        neurons.run({**params, "gain": params["gain"][:3]}, inputs, NeuronConfig(kind=neuron))
    with pytest.raises(ValueError, match=r"params\['decay'\]: expected shape \(\) or \(5,\)"):
        neurons.run({**params, "decay": jnp.zeros(4)}, inputs, NeuronConfig(kind=neuron))


def test_a_step_with_wrong_spikes_or_state_is_a_clear_error(inputs):
    params = {"tau": jnp.zeros(C)}

    def wrong_shape(state, params, inputs_t, time_step):
        return state, jnp.sum(inputs_t, axis=-1)

    def integer_spikes(state, params, inputs_t, time_step):
        return state, (inputs_t > 0).astype(jnp.int32)

    def growing_state(state, params, inputs_t, time_step):
        return MembraneState(state.membrane[None], state.spike), inputs_t

    spec = (Parameter("tau", 0.5),)
    with pytest.raises(ValueError, match=r"neuron 'wrong_shape': its step returned spikes of shape \(3,\)"):
        neurons.run(params, inputs, NeuronConfig(kind=Neuron("wrong_shape", wrong_shape, spec)))
    with pytest.raises(TypeError, match="neuron 'integer_spikes': its step returned spikes of dtype int32"):
        neurons.run(params, inputs, NeuronConfig(kind=Neuron("integer_spikes", integer_spikes, spec)))
    with pytest.raises(ValueError, match="neuron 'growing_state': its step changed the state"):
        neurons.run(params, inputs, NeuronConfig(kind=Neuron("growing_state", growing_state, spec)))
    with pytest.raises(ValueError, match=r"params: neuron 'plif' needs exactly \('w',\); missing \['w'\]"):
        neurons.run(params, inputs, NeuronConfig(kind="plif"))


def test_the_configured_surrogate_reaches_a_users_step(inputs):
    params = lif_params()

    def grad_of(surrogate):
        config = NeuronConfig(kind=MY_LIF, surrogate=surrogate)
        return jax.grad(lambda x: jnp.sum(neurons.run(params, x, config)))(inputs)

    assert not np.array_equal(grad_of("rectangular"), grad_of("sigmoid"))
    np.testing.assert_allclose(grad_of("triangle"), jax.grad(
        lambda x: jnp.sum(neurons.run(params, x, NeuronConfig(kind="lif", surrogate="triangle",
                                                              implementation="xla"))))(inputs), rtol=1e-6)


def test_gate_group_parameters_follow_the_gate_mode_and_static_groups(inputs):
    def step(state, params, inputs_t, time_step):
        membrane = params["mix"] * state.membrane + inputs_t
        spikes = neurons.spike(membrane - params["v_th"])
        return MembraneState(membrane, spikes), spikes

    neuron = Neuron("test_gated", step, (Parameter("mix", Uniform(-1.0, 1.0), group="gates"), Parameter("v_th", 0.5)))
    params = {"mix": jnp.asarray([-0.3, 0.2, 0.0, 1.0, -2.0]), "v_th": jnp.zeros(C)}
    hard = neurons.constrained_values(neuron, params, NeuronConfig(kind=neuron, gates="hard"), jnp.float32)
    np.testing.assert_array_equal(hard["mix"], [0.0, 1.0, 0.0, 1.0, 0.0])
    loss = lambda p, **kw: jnp.sum(neurons.run(p, inputs, NeuronConfig(kind=neuron, **kw)))  # noqa: E731
    assert np.all(np.asarray(jax.grad(loss)(params, static_gates=True)["mix"]) == 0)
    assert np.any(np.asarray(jax.grad(loss)(params)["mix"]) != 0)
    assert np.all(np.asarray(jax.grad(loss)(params, static_primitives=True)["v_th"]) == 0)


# ---- the built-in baselines against their equations ----------------------------------------------
@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("v_reset", [0.0, -0.25, None])
def test_plif_matches_its_equations(inputs, decay_input, v_reset):
    inverse_tau = np.linspace(0.2, 0.8, C)
    params = {"w": jnp.asarray(logit(inverse_tau), jnp.float32)}
    options = dict(decay_input=decay_input, v_threshold=0.6, v_reset=v_reset)
    config = NeuronConfig(kind="plif", options=options)
    with jax.enable_x64(True):
        spikes, states, final = neurons.scan({"w": jnp.asarray(params["w"], jnp.float64)},
                                             jnp.asarray(inputs, jnp.float64), config)
    want_spikes, want_membranes = reference.plif(inputs, 1 / (1 + np.exp(-np.asarray(params["w"], np.float64))),
                                                 **options)
    assert 0 < want_spikes.mean() < 1
    np.testing.assert_array_equal(np.asarray(spikes), want_spikes)
    np.testing.assert_allclose(np.asarray(states.membrane), want_membranes, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(final.membrane), np.asarray(states.membrane[-1]))


def test_plif_soft_reset_is_an_option_as_well_as_spikingjellys_v_reset_none(inputs):
    params = {"w": jnp.asarray(logit(np.linspace(0.2, 0.8, C)), jnp.float32)}
    by_none = neurons.scan(params, inputs, NeuronConfig(kind="plif", options={"v_reset": None}))
    by_flag = neurons.scan(params, inputs, NeuronConfig(kind="plif", options={"soft_reset": True, "v_reset": 0.3}))
    for a, b in zip(jax.tree.leaves(by_none), jax.tree.leaves(by_flag)):
        np.testing.assert_array_equal(a, b)


def test_plif_fires_at_the_threshold_and_starts_at_v_reset():
    params = {"w": jnp.asarray(logit(0.5), jnp.float32)}
    exactly = jnp.full((2, 1, 1), 2.0)   # v = 0 + (2 - 0) * 0.5 = 1.0 = v_threshold
    assert float(neurons.run(params, exactly, NeuronConfig(kind="plif"))[0, 0, 0]) == 1.0
    _, states, _ = neurons.scan(params, jnp.zeros((1, 1, 1)), NeuronConfig(kind="plif", options={"v_reset": 0.5}))
    assert float(states.membrane[0, 0, 0]) == 0.5   # v stays at v_reset without input


def test_plif_gradients_equal_plain_autodiff_of_its_restated_equations(inputs):
    params = {"w": jnp.asarray(logit(np.linspace(0.2, 0.8, C)), jnp.float32)}
    weights = jax.random.normal(jax.random.PRNGKey(1), inputs.shape)

    def library(p, x):
        return jnp.sum(neurons.run(p, x, NeuronConfig(kind="plif", surrogate="sigmoid")) * weights)

    def restated(p, x):   # the equations again, in an unrolled Python loop of jnp
        from glif_jax import surrogate
        k, v, total = jax.nn.sigmoid(p["w"]), jnp.zeros(x.shape[1:]), 0.0
        for t in range(x.shape[0]):
            v = v + (x[t] - v) * k
            o = surrogate.heaviside(v - 1.0, "sigmoid", inclusive=True)
            v = (1.0 - o) * v + o * 0.0
            total = total + jnp.sum(o * weights[t])
        return total

    got = jax.grad(library, argnums=(0, 1))(params, inputs)
    want = jax.grad(restated, argnums=(0, 1))(params, inputs)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_adaptive_lif_matches_its_equations_and_is_lif_without_adaptation(inputs):
    values = {"tau": np.full(C, 0.6), "v_th": np.linspace(0.2, 0.6, C), "rho": np.full(C, 0.7),
              "kappa": np.linspace(0.1, 0.9, C)}
    params = {name: jnp.asarray(logit(value), jnp.float32) for name, value in values.items()}
    with jax.enable_x64(True):
        spikes, states, _ = neurons.scan({k: jnp.asarray(v, jnp.float64) for k, v in params.items()},
                                         jnp.asarray(inputs, jnp.float64), NeuronConfig(kind="alif"))
    exact = {name: 1 / (1 + np.exp(-np.asarray(p, np.float64))) for name, p in params.items()}
    want_spikes, want_membranes = reference.adaptive_lif(inputs, **exact)
    assert 0 < want_spikes.mean() < 1
    np.testing.assert_array_equal(np.asarray(spikes), want_spikes)
    np.testing.assert_allclose(np.asarray(states.membrane), want_membranes, rtol=1e-12, atol=1e-12)
    no_adaptation = {**params, "kappa": jnp.full(C, -jnp.inf)}
    np.testing.assert_array_equal(
        neurons.run(no_adaptation, inputs, NeuronConfig(kind="alif")),
        neurons.run({"tau": params["tau"], "v_th": params["v_th"]}, inputs, NeuronConfig(kind="lif")))

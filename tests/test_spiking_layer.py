"""glif_jax.layers.spiking: the Flax spiking layer's parameters, initialisation (the GLIF paper's neuron equations) and helpers."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glif_jax.layers import GLIF, neuron_values
from glif_jax.neuron import NeuronConfig, glif
from tests.neuron_reference import sigmoid

T, B, C = 4, 8, 16


def init(module, time_steps=T, channels=C, seed=0):
    x = jnp.ones((time_steps, B, 3, 3, channels))
    return module.init(jax.random.PRNGKey(seed), x)["params"]


@pytest.mark.parametrize("channel_wise,shape", [(True, (C,)), (False, ())])
def test_parameter_names_and_shapes(channel_wise, shape):
    """The GLIF paper's parameterisation: seven per-channel (or scalar) logits plus cond [T, C] (or [T])."""
    params = init(GLIF(channel_wise=channel_wise))
    assert set(params) == {"alpha", "beta", "gamma", "tau", "lam", "v_th", "v_re", "cond"}
    for name, value in params.items():
        assert value.shape == ((T, *shape) if name == "cond" else shape), name
        assert value.dtype == jnp.float32


@pytest.mark.parametrize(
    "preset,time_steps,expected",
    [
        ("cifar", 4, {"v_th": 0.5, "v_re": 0.5, "cond": 0.5, "tau": 0.25, "lam": 0.0625}),
        ("imagenet", 4, {"v_th": 0.5, "v_re": 0.5, "cond": 0.5, "tau": 0.25, "lam": 0.0625}),
        ("imagenet", 6, {"v_th": 0.5, "v_re": 0.5, "cond": 0.5, "tau": 0.25, "lam": 0.0625}),
        ("imagenet_t6", 6, {"v_th": 0.5, "v_re": 0.5, "cond": 0.9, "tau": 0.25, "lam": 0.0625}),
        ("dvs", 4, {"v_th": 0.99999, "v_re": 0.99999, "cond": 0.9, "tau": 0.5, "lam": 0.03125}),
    ],
)
def test_primitive_initialisation(preset, time_steps, expected):
    """The GLIF paper's neuron equations initialisation table: logit(value) stored, sigmoid gives the table's value back."""
    params = init(GLIF(neuron_init=preset), time_steps=time_steps)
    for name, value in expected.items():
        np.testing.assert_allclose(sigmoid(np.asarray(params[name], np.float64)), value, rtol=1e-5)


def test_gate_initialisation_range():
    """The GLIF paper's neuron equations: gate logits ~ U[-0.2, 0.2), so gate values lie in [0.4502, 0.5498); independent per entry."""
    params = init(GLIF(), channels=4096)
    for name in ("alpha", "beta", "gamma"):
        logits = np.asarray(params[name])
        assert logits.min() >= -0.2 and logits.max() < 0.2
        assert logits.min() < -0.19 and logits.max() > 0.19  # spans the range
        assert abs(logits.mean()) < 0.01 and abs(logits.std() - 0.4 / np.sqrt(12)) < 0.005
        values = sigmoid(logits)
        assert values.min() >= sigmoid(-0.2) and values.max() < sigmoid(0.2)  # [0.4502, 0.5498)
    assert not np.array_equal(params["alpha"], params["beta"])


def test_explicit_initial_values():
    values = {"tau": 0.3, "lam": 0.1, "v_th": 0.7, "v_re": 0.2, "cond": 0.6}
    params = init(GLIF(neuron_init=values))
    for name, value in values.items():
        np.testing.assert_allclose(sigmoid(np.asarray(params[name], np.float64)), value, rtol=1e-5)
    with pytest.raises(ValueError, match=r"missing \['cond'\]"):
        init(GLIF(neuron_init={k: v for k, v in values.items() if k != "cond"}))
    with pytest.raises(ValueError, match=r"neuron_init.v_th: values live in \(0, 1\)"):
        init(GLIF(neuron_init=dict(values, v_th=1.0)))
    with pytest.raises(ValueError, match="unknown preset"):
        init(GLIF(neuron_init="mnist"))


def test_init_values_is_a_deprecated_name_of_neuron_init():
    with pytest.warns(DeprecationWarning, match="neuron_init"):
        layer = GLIF(init_values="dvs")
    assert layer.neuron_init == "dvs" and layer.init_values is None
    for name, value in init(GLIF(neuron_init="dvs")).items():
        np.testing.assert_array_equal(init(layer)[name], value)
    with pytest.raises(ValueError, match="neuron_init only"):
        GLIF(init_values="dvs", neuron_init="imagenet")


def test_module_calls_the_pure_function():
    module = GLIF(neuron=NeuronConfig(gates="hard"))
    x = jax.random.uniform(jax.random.PRNGKey(1), (T, B, 3, 3, C), minval=0.0, maxval=1.5)
    params = module.init(jax.random.PRNGKey(2), x)["params"]
    out = module.apply({"params": params}, x)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(glif(params, x, gates="hard")))
    assert 0 < float(out.mean()) < 1


@pytest.mark.parametrize("kind,names", [("glif_f", {"tau", "lam", "v_th", "v_re", "cond"}), ("lif", {"tau", "v_th"})])
def test_other_kinds_own_only_their_parameters(kind, names):
    assert set(init(GLIF(neuron=NeuronConfig(kind=kind)))) == names


def test_spike_stats_are_sown_only_when_asked():
    """Rates [T, C] = mean spike over batch and space, per time step and channel."""
    module = GLIF()
    x = jax.random.uniform(jax.random.PRNGKey(3), (T, B, 3, 3, C), minval=0.0, maxval=1.5)
    variables = module.init(jax.random.PRNGKey(4), x)
    out, state = module.apply(variables, x, mutable=["spike_stats"])
    rates = state["spike_stats"]["rates"]
    np.testing.assert_allclose(np.asarray(rates), np.asarray(out).mean(axis=(1, 2, 3)), rtol=1e-6)
    assert rates.shape == (T, C)
    _, state = module.apply(variables, x, mutable=[])
    assert "spike_stats" not in state


def test_wrong_time_length_at_apply_is_named():
    module = GLIF()
    params = init(module)
    with pytest.raises(ValueError, match=r"cond is \(4, 16\).*expected inputs \[T=4, \.\.\., C\]"):
        module.apply({"params": params}, jnp.ones((3, B, 3, 3, C)))
    with pytest.raises(ValueError, match=r"alpha is \(16,\)"):
        module.apply({"params": params}, jnp.ones((4, B, 3, 3, C + 1)))


class TwoLayers(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = GLIF(name="first")(nn.Dense(C, name="dense")(x))
        return GLIF(name="second", channel_wise=False)(x)


def test_neuron_values_lists_every_layer_in_order():
    params = TwoLayers().init(jax.random.PRNGKey(0), jnp.ones((T, B, C)))["params"]
    values = neuron_values(params)
    assert list(values) == ["first", "second"]
    for path, layer in values.items():
        for name, value in layer.items():
            np.testing.assert_allclose(value, sigmoid(np.asarray(params[path][name], np.float64)), rtol=1e-6)
    assert values["second"]["tau"].shape == ()

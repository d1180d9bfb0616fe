"""glif-jax against spikingjelly's GatedLIFNode (the GLIF paper's neuron equations), an independent implementation.

Runs only where the ``bench`` extra (torch CPU, spikingjelly) is installed; the main suite
does not need torch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytestmark = pytest.mark.torch
pytest.importorskip("torch")
pytest.importorskip("spikingjelly")

from benchmarks import torch_glif  # noqa: E402
from glif_jax.neuron import glif  # noqa: E402

TIME_STEPS, BATCH, HEIGHT, WIDTH, CHANNELS = 4, 2, 3, 3, 5


def small_problem(seed=0):
    """Per-channel logits around the paper's CIFAR initialisation (float32 values, float64 arrays)."""
    rng = np.random.default_rng(seed)
    centre = {"alpha": 0.0, "beta": 0.0, "gamma": 0.0, "tau": -1.1, "lam": -2.7, "v_th": 0.0, "v_re": 0.0}
    logits = {name: value + rng.normal(0, 0.5, CHANNELS) for name, value in centre.items()}
    logits["cond"] = rng.normal(0, 0.5, (TIME_STEPS, CHANNELS))
    logits = {name: value.astype(np.float32).astype(np.float64) for name, value in logits.items()}
    shape = (TIME_STEPS, BATCH, HEIGHT, WIDTH, CHANNELS)
    inputs = rng.uniform(-0.5, 1.5, shape)
    grad_spikes = rng.normal(0, 1, shape)
    return inputs, grad_spikes, logits


def test_spikes_and_gradients_equal_spikingjelly_gated_lif_node():
    """The GLIF paper's neuron equations (GLIF, soft gates, channel-wise, rectangular surrogate of width 1): same spikes,
    same gradients for the inputs and all eight parameters, in float64."""
    inputs, grad_spikes, logits = small_problem()
    want = torch_glif.spikingjelly_reference(inputs, grad_spikes, logits)
    with jax.enable_x64(True):
        params = {name: jnp.asarray(value) for name, value in logits.items()}
        spikes, pullback = jax.vjp(lambda p, x: glif(p, x), params, jnp.asarray(inputs))
        grad_params, grad_inputs = pullback(jnp.asarray(grad_spikes))
    assert 0 < want["spikes"].sum() < want["spikes"].size  # neither silent nor saturated
    np.testing.assert_array_equal(np.asarray(spikes), want["spikes"])
    np.testing.assert_allclose(np.asarray(grad_inputs), want["inputs"], rtol=1e-9, atol=1e-12)
    for name, value in grad_params.items():
        np.testing.assert_allclose(np.asarray(value), want[name], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("decay_input, v_reset", [(True, 0.0), (False, 0.0), (True, None), (False, -0.3)])
def test_plif_spikes_and_gradients_equal_spikingjelly_parametric_lif_node(decay_input, v_reset):
    """PLIF (Fang et al., ICCV 2021): spikingjelly's ParametricLIFNode (one w per layer, sigmoid
    surrogate with alpha 4) and glif-jax's layer-wise "plif" give the same spikes, and the same
    gradients for the inputs and w, in float64."""
    import torch
    from spikingjelly.activation_based import neuron as sj_neuron
    from spikingjelly.activation_based import surrogate as sj_surrogate

    rng = np.random.default_rng(1)
    inputs = rng.uniform(-0.5, 2.5, (6, 3, 4))
    grad_spikes = rng.normal(0, 1, inputs.shape)
    w = 0.3
    node = sj_neuron.ParametricLIFNode(init_tau=2.0, decay_input=decay_input, v_threshold=0.8, v_reset=v_reset,
                                       surrogate_function=sj_surrogate.Sigmoid(alpha=4.0), step_mode="m")
    node.w.data = torch.tensor(w, dtype=torch.float64)
    x = torch.tensor(inputs, requires_grad=True)
    want = node(x)
    want.backward(torch.tensor(grad_spikes))

    config = dict(kind="plif", surrogate="sigmoid", surrogate_width=4.0,
                  options=dict(decay_input=decay_input, v_threshold=0.8, v_reset=v_reset))
    with jax.enable_x64(True):
        spikes, pullback = jax.vjp(lambda p, x: glif(p, x, **config), {"w": jnp.asarray(w)}, jnp.asarray(inputs))
        grad_params, grad_inputs = pullback(jnp.asarray(grad_spikes))
    assert 0 < want.detach().numpy().mean() < 1
    np.testing.assert_array_equal(np.asarray(spikes), want.detach().numpy())
    np.testing.assert_allclose(np.asarray(grad_inputs), x.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(grad_params["w"]), float(node.w.grad), rtol=1e-9, atol=1e-12)

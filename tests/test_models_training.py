"""Models with real weights: initialisation (the paper's architectures), the tdBN k·V scale inside a network
(the paper's tdBN and time-merging conventions), and jitted SGD steps that lower the loss (the paper's optimiser, plain here)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from glif_jax.layers import RESIDUAL_BRANCH_SCALE, TDBN_THRESHOLD, TdBatchNorm
from glif_jax.models import get_model
from glif_jax.neuron import GATE_NAMES, PRIMITIVE_NAMES

# Threefry programs take seconds to compile on a CPU; "rbg" draws from the same distributions.
FAST_COMPILING_KEY = jax.random.key(0, impl="rbg")
TIME_STEPS = 2
LABELS = jnp.array([3, 7])


def initialise(model, x):
    variables = jax.jit(lambda key: model.init(key, x, train=False))(FAST_COMPILING_KEY)
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


@pytest.fixture(scope="module")
def resnet18():
    model = get_model("resnet18", num_classes=10, time_steps=TIME_STEPS)
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    return model, x, initialise(model, x)


def test_weight_initialisation(resnet18):
    """The paper's architectures: convs Kaiming-normal (fan_out, ReLU gain, untruncated), BN weight 1 / bias 0,
    linear weights Normal(0, 0.01)."""
    _, _, variables = resnet18
    params = variables["params"]
    kernel = np.asarray(params["stage4_block2"]["conv_norm1"]["conv"]["kernel"])   # 3×3, 512→512
    std = math.sqrt(2.0 / (3 * 3 * 512))
    assert abs(kernel.std() / std - 1) < 0.01 and abs(kernel.mean()) < 0.01 * std
    assert np.abs(kernel).max() > 4.5 * std                                     # not truncated at 2σ
    shortcut = np.asarray(params["stage4_block1"]["shortcut"]["conv_norm"]["conv"]["kernel"])  # 1×1, 256→512
    assert abs(shortcut.std() / math.sqrt(2.0 / 512) - 1) < 0.02
    stem = np.asarray(params["stem"]["conv_norm"]["conv"]["kernel"])              # 3×3, 3→64: fan_out 576
    assert abs(stem.std() / math.sqrt(2.0 / 576) - 1) < 0.1
    head = np.asarray(params["head1"]["kernel"])
    assert abs(head.std() / 0.01 - 1) < 0.02
    norm = params["stage1_block1"]["conv_norm1"]["norm"]
    np.testing.assert_array_equal(norm["scale"], 1.0)
    np.testing.assert_array_equal(norm["bias"], 0.0)


def test_batch_norm_outputs_have_std_k_times_v_inside_the_network(resnet18):
    """The paper's tdBN and time-merging conventions and architectures numerically: in train mode (w = 1, b = 0) each tdBN output has per-channel
    std k·V — 0.5/√2 on the two summed branches of every residual block, 0.5 elsewhere."""
    model, x, variables = resnet18
    scales = {}

    def run(variables):
        outputs = {}

        def interceptor(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if isinstance(context.module, TdBatchNorm) and context.method_name == "__call__":
                path = "/".join(context.module.path)
                scales[path] = context.module.k
                outputs[path] = (args[0], out)
            return out

        with nn.intercept_methods(interceptor):
            model.apply(variables, x, train=True, mutable=["batch_stats"])
        return outputs

    outputs = jax.jit(run)(variables)
    assert sum(k == RESIDUAL_BRANCH_SCALE for k in scales.values()) == 2 * 8
    for path, (inputs, out) in outputs.items():
        channels = inputs.shape[-1]
        live = np.asarray(inputs).reshape(-1, channels).var(0) > 1e-2
        assert live.mean() > 0.5, path
        std = np.asarray(out).reshape(-1, channels).std(0)[live]
        np.testing.assert_allclose(std, scales[path] * TDBN_THRESHOLD, rtol=2e-3, err_msg=path)


def sgd_losses(model, variables, x, learning_rate, steps=3):
    """Losses before each of ``steps`` jitted SGD steps on one batch, and the first gradients."""
    optimizer = optax.sgd(learning_rate)

    def loss_fn(params, batch_stats):
        logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                      mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, LABELS).mean(), updates["batch_stats"]

    @jax.jit
    def step(params, batch_stats, opt_state):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss, grads

    params, batch_stats = variables["params"], variables["batch_stats"]
    opt_state = optimizer.init(params)
    losses, first_grads = [], None
    for _ in range(steps + 1):
        params, batch_stats, opt_state, loss, grads = step(params, batch_stats, opt_state)
        losses.append(float(loss))
        first_grads = grads if first_grads is None else first_grads
    return losses, first_grads


def assert_neuron_parameters_learn(grads):
    """Surrogate gradients reach every gate and primitive kind (the GLIF paper's neuron equations)."""
    flat = jax.tree_util.tree_flatten_with_path(grads)[0]
    assert all(np.all(np.isfinite(leaf)) for _, leaf in flat)
    for name in GATE_NAMES + PRIMITIVE_NAMES:
        assert any(path[-1].key == name and np.any(leaf != 0) for path, leaf in flat), name


def test_sgd_steps_lower_the_loss_of_resnet18(resnet18):
    """A jitted SGD step on a tiny CIFAR batch lowers the cross-entropy of the time-averaged logits."""
    model, x, variables = resnet18
    losses, grads = sgd_losses(model, variables, x, learning_rate=0.1)
    assert losses[-1] < losses[0], losses
    assert_neuron_parameters_learn(grads)


def test_sgd_steps_lower_the_loss_of_wide7b():
    """The same on event frames [B, T, 48, 48, 2] with 7B-wideNet (SEW blocks, plain BN)."""
    model = get_model("wide7b", num_classes=10, time_steps=TIME_STEPS, neuron_init="dvs")
    frames = (jax.random.uniform(jax.random.key(2), (2, TIME_STEPS, 48, 48, 2)) > 0.8).astype(jnp.float32)
    losses, grads = sgd_losses(model, initialise(model, frames), frames, learning_rate=0.01)
    assert losses[-1] < losses[0], losses
    assert_neuron_parameters_learn(grads)

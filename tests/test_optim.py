"""Tests of glif_jax.optim: groups, cosine schedules, PyTorch-style SGD (the paper's training recipe)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax.core import freeze

from glif_jax import models, neuron, optim
from glif_jax.analysis import network_order
from glif_jax.errors import OptionError
from glif_jax.layers import GLIF

# Leaf names of GLIF parameters, from the GLIF paper's neuron equations (written here independently).
GATE_LEAVES = ("alpha", "beta", "gamma")
PRIMITIVE_LEAVES = ("tau", "lam", "v_th", "v_re", "cond")


def optim_config(**overrides) -> ml_collections.ConfigDict:
    """The `config.optim` block of the schema, with the CIFAR recipe as defaults."""
    values = dict(
        base_lr=0.1, momentum=0.9, weight_decay=5e-5, gate_lr_scale=0.1,
        primitive_lr_scale=1.0, cosine_period_epochs=None, step_schedule_per="epoch",
        nesterov=False,
    )
    values.update(overrides)
    return ml_collections.ConfigDict(values)


def toy_params() -> dict:
    """A small tree with one leaf of every kind, plus look-alike names that are weights."""
    rng = np.random.default_rng(0)
    leaf = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)  # noqa: E731
    return {
        "Conv_0": {"kernel": leaf(3, 3, 2, 4)},
        "BatchNorm_0": {"scale": leaf(4), "bias": leaf(4)},
        "GLIF_0": {
            "alpha": leaf(4), "beta": leaf(4), "gamma": leaf(4),
            "tau": leaf(4), "lam": leaf(4), "v_th": leaf(4), "v_re": leaf(4), "cond": leaf(2, 4),
        },
        "Dense_0": {"kernel": leaf(4, 3), "lambda_x": leaf(3), "beta_bn": leaf(3),
                    "tau_bias": leaf(3), "v_th2": leaf(3), "gammas": leaf(3)},
    }


def expected_group(name: str) -> str:
    if name in GATE_LEAVES:
        return "gates"
    if name in PRIMITIVE_LEAVES:
        return "primitives"
    return "weights"


def cosine_closed_form(peak: float, epoch: float, t_max: float) -> float:
    """PyTorch CosineAnnealingLR closed form, eta_min = 0 (the paper's training recipe)."""
    return peak * (1.0 + math.cos(math.pi * epoch / t_max)) / 2.0


# ---------------------------------------------------------------- groups


def test_param_labels_match_whole_leaf_names():
    """The paper's parameter groups: gates/primitives by exact GLIF leaf name; look-alikes are weights."""
    params = toy_params()
    labels = optim.param_labels(params)
    for module, leaves in params.items():
        for name in leaves:
            assert labels[module][name] == expected_group(name), (module, name)
    assert labels["Dense_0"]["lambda_x"] == "weights"
    assert labels["Dense_0"]["beta_bn"] == "weights"
    assert labels["BatchNorm_0"]["scale"] == "weights"
    assert labels["GLIF_0"]["cond"] == "primitives"
    assert labels["GLIF_0"]["gamma"] == "gates"


def test_param_labels_on_a_flax_tree_and_frozen_dict():
    """A real Flax parameter tree: a GLIF layer's leaves by name; a module named like a primitive,
    and GLIF names in a module that is not a GLIF layer, are weights."""

    class Toy(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(3, name="tau")(x)  # module name is a GLIF name; its leaves are not
            gate = self.param("alpha", nn.initializers.zeros, (3,))
            cond = self.param("cond", nn.initializers.zeros, (2, 3))
            decoy = self.param("lambda_x", nn.initializers.zeros, (3,))
            return GLIF(name="glif")(jnp.stack([x * gate, cond.sum(0) + decoy + x]))

    params = Toy().init(jax.random.key(0), jnp.ones((1, 2)))["params"]
    for tree in (params, freeze(params)):
        labels = optim.param_labels(tree)
        assert labels["tau"]["kernel"] == "weights"
        assert labels["tau"]["bias"] == "weights"
        assert labels["alpha"] == "weights"
        assert labels["cond"] == "weights"
        assert labels["lambda_x"] == "weights"
        assert {name: labels["glif"][name] for name in tree["glif"]} == {
            name: expected_group(name) for name in GATE_LEAVES + PRIMITIVE_LEAVES}
        assert jax.tree.structure(labels) == jax.tree.structure(tree)


class ScaleShift(nn.Module):
    """A user's normalisation-like layer whose shift is called ``beta`` (as in Keras's BatchNorm)."""

    @nn.compact
    def __call__(self, x):
        gamma = self.param("gamma", nn.initializers.ones, (x.shape[-1],))
        beta = self.param("beta", nn.initializers.zeros, (x.shape[-1],))
        return x * gamma + beta


class UserModel(nn.Module):
    """A user's layers with GLIF-like parameter names around one GLIF layer."""

    @nn.compact
    def __call__(self, x):                                         # x: [T, B, F]
        x = nn.Dense(4, name="dense")(x)
        x = x + self.param("beta", nn.initializers.zeros, (4,))    # the model's own beta
        x = ScaleShift(name="norm")(x)
        x = GLIF(name="glif")(x)
        tau = self.param("tau", nn.initializers.ones, (4,))        # and its own tau
        return x * tau


def test_a_users_beta_is_a_weight_and_the_glif_layers_gates_are_gates():
    params = UserModel().init(jax.random.key(0), jnp.ones((2, 3, 5)))["params"]
    labels = optim.param_labels(params)
    assert labels["beta"] == "weights" and labels["tau"] == "weights"
    assert labels["norm"] == {"gamma": "weights", "beta": "weights"}
    assert labels["dense"] == {"kernel": "weights", "bias": "weights"}
    assert labels["glif"] == {name: expected_group(name) for name in params["glif"]}
    assert {labels["glif"][name] for name in GATE_LEAVES} == {"gates"}

    # the optimiser decays the user's beta (a weight) and leaves the GLIF gates alone
    config = optim_config(base_lr=0.2, weight_decay=0.25, gate_lr_scale=0.1)
    tx = optim.make_optimizer(config, num_epochs=10, steps_per_epoch=4)
    beta = params["norm"]["beta"] + 1.0
    with_beta = {**params, "norm": {**params["norm"], "beta": beta}}
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, with_beta), tx.init(with_beta), with_beta)
    np.testing.assert_allclose(updates["norm"]["beta"], -0.2 * 0.25 * beta, rtol=1e-6)
    for name in GATE_LEAVES:
        np.testing.assert_array_equal(updates["glif"][name], 0.0)


def leaf_name_labels(params):
    """The groups as chosen before they depended on the GLIF layer: by leaf name alone."""
    return jax.tree_util.tree_map_with_path(lambda path, _: expected_group(str(path[-1].key)), params)


@pytest.mark.parametrize("name,options", [
    ("resnet18", {}),
    ("tiny_convnet", {"neuron": neuron.NeuronConfig(kind="lif")}),
    ("tiny_convnet", {"neuron": neuron.NeuronConfig(kind="glif_f")}),
    ("tiny_convnet", {"channel_wise": False}),
])
def test_the_paper_models_get_the_labels_of_the_leaf_name_rule(name, options):
    """The paper's networks name nothing else like a GLIF parameter, so the groups are those of
    the leaf-name rule; and the GLIF layers found in the tree are exactly the model's GLIF modules."""
    model = models.get_model(name, num_classes=10, time_steps=2, **options)
    x = jnp.zeros((1, 32, 32, 3) if name == "resnet18" else (1, 8, 8, 1))
    params = jax.eval_shape(lambda key: model.init(key, x, train=False), jax.random.key(0))["params"]
    assert optim.param_labels(params) == leaf_name_labels(params)
    scopes = neuron.neuron_scopes(params)
    assert sorted(scopes) == sorted(network_order(model, x, train=False))
    assert optim.param_labels(params, neuron_scopes=list(scopes)) == leaf_name_labels(params)


def test_named_neuron_scopes_for_a_neuron_of_ones_own():
    """A neuron that stores GLIF's parameters beside a new one (docs/custom_neuron.md) is not a
    GLIF layer by itself; naming its scope groups GLIF's names there and keeps the new one a weight."""
    rng = np.random.default_rng(1)
    glif_params = {name: jnp.asarray(rng.normal(size=(4,)), jnp.float32) for name in GATE_LEAVES + PRIMITIVE_LEAVES}
    params = {"w_in": jnp.ones((3, 4)), "neuron": {**glif_params, "syn": jnp.zeros((4,))}}
    assert set(jax.tree.leaves(optim.param_labels(params))) == {"weights"}
    labels = optim.param_labels(params, neuron_scopes=["neuron"])
    assert labels["w_in"] == "weights" and labels["neuron"]["syn"] == "weights"
    assert {name: labels["neuron"][name] for name in glif_params} == {
        name: expected_group(name) for name in glif_params}
    assert optim.param_labels(glif_params, neuron_scopes=[""]) == optim.param_labels(glif_params)
    with pytest.raises(ValueError, match="neuron_scopes.*'neurons'"):
        optim.param_labels(params, neuron_scopes=["neurons"])
    tx = optim.make_optimizer(optim_config(weight_decay=0.5), num_epochs=2, steps_per_epoch=1,
                              neuron_scopes=["neuron"])
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    np.testing.assert_array_equal(updates["neuron"]["alpha"], 0.0)
    np.testing.assert_allclose(updates["w_in"], -0.1 * 0.5 * params["w_in"], rtol=1e-6)


def test_group_of_every_glif_name():
    for name in GATE_LEAVES:
        assert optim.group_of(name) == "gates"
    for name in PRIMITIVE_LEAVES:
        assert optim.group_of(name) == "primitives"
    for name in ("kernel", "scale", "bias", "embedding", "Alpha", "tau_", "v", "lambda"):
        assert optim.group_of(name) == "weights"


# ---------------------------------------------------------------- schedules


@pytest.mark.parametrize("per", ["epoch", "step"])
def test_schedule_equals_pytorch_closed_form(per):
    """The paper's training recipe: lr = base (1 + cos(pi epoch / T_max)) / 2, epoch = step // spe or step / spe."""
    steps_per_epoch, t_max, peak = 10, 200, 0.1
    schedule = optim.cosine_annealing(
        peak, period_epochs=t_max, steps_per_epoch=steps_per_epoch, per=per
    )
    for step in (0, 1, 9, 10, 15, 999, 1000, 1005, 1500, 1999):
        epoch = step // steps_per_epoch if per == "epoch" else step / steps_per_epoch
        expected = cosine_closed_form(peak, epoch, t_max)
        np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-5, atol=1e-8)
    if per == "epoch":  # constant within an epoch
        assert float(schedule(10)) == float(schedule(19))
    else:  # changes within an epoch
        assert float(schedule(10)) > float(schedule(19))


def test_dvs_schedule_follows_torch_past_t_max():
    """The paper's training recipe, CIFAR10-DVS: T_max = 64 over 200 epochs; torch's rate rises again past T_max.

    Reference: torch's recursive (chainable) CosineAnnealingLR update from its documentation,
    stepped once per epoch, eta_min = 0.
    """
    base, t_max, epochs, steps_per_epoch = 0.01, 64, 200, 3
    schedule = optim.cosine_annealing(base, period_epochs=t_max, steps_per_epoch=steps_per_epoch)
    lr, torch_rates = base, [base]
    for t_cur in range(epochs - 1):
        if (t_cur - t_max) % (2 * t_max) == 0:  # T_cur = (2k + 1) T_max
            lr = lr + base * (1 - math.cos(math.pi / t_max)) / 2
        else:
            lr = lr * (1 + math.cos(math.pi * (t_cur + 1) / t_max)) / (
                1 + math.cos(math.pi * t_cur / t_max)
            )
        torch_rates.append(lr)
    ours = np.asarray(schedule(jnp.arange(epochs) * steps_per_epoch + 1))
    np.testing.assert_allclose(ours, torch_rates, rtol=1e-4, atol=1e-9)
    assert ours[64] < 1e-9 and abs(ours[128] - base) < 1e-8 and ours[100] > ours[64]


def test_learning_rates_per_group_and_default_period():
    """Each group has its own peak; period None means num_epochs (the paper's training recipe)."""
    config = optim_config(base_lr=0.2, gate_lr_scale=0.1, primitive_lr_scale=0.5)
    rates = optim.learning_rates(config, num_epochs=8, steps_per_epoch=5)
    assert set(rates) == {"weights", "primitives", "gates"}
    for group, peak in (("weights", 0.2), ("primitives", 0.1), ("gates", 0.02)):
        for step in (0, 7, 20, 39):
            expected = cosine_closed_form(peak, step // 5, 8)
            np.testing.assert_allclose(float(rates[group](step)), expected, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(step_schedule_per="iteration"), "step_schedule_per"),
        (dict(cosine_period_epochs=0), "period_epochs"),
        (dict(base_lr=-0.1), "base_lr"),
        (dict(gate_lr_scale=-1.0), "gate_lr_scale"),
    ],
)
def test_bad_schedule_settings_are_rejected(kwargs, field):
    with pytest.raises(ValueError, match=field):
        optim.learning_rates(optim_config(**kwargs), num_epochs=4, steps_per_epoch=2)


def test_bad_sizes_and_sgd_settings_are_rejected():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        optim.learning_rates(optim_config(), num_epochs=4, steps_per_epoch=0)
    with pytest.raises(ValueError, match="num_epochs"):
        optim.learning_rates(optim_config(), num_epochs=0, steps_per_epoch=2)
    with pytest.raises(ValueError, match="momentum"):
        optim.torch_sgd(0.1, momentum=1.5)
    with pytest.raises(ValueError, match="weight_decay"):
        optim.torch_sgd(0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        optim.torch_sgd(0.1, nesterov=True)


# ---------------------------------------------------------------- the optimiser


def test_each_group_gets_its_own_learning_rate_and_decay():
    """The paper's training recipe: weights decayed, primitives and gates not; gates at gate_lr_scale * lr."""
    config = optim_config(base_lr=0.2, weight_decay=0.25, gate_lr_scale=0.1, primitive_lr_scale=0.5)
    params = toy_params()
    labels = optim.param_labels(params)
    tx = optim.make_optimizer(config, num_epochs=10, steps_per_epoch=4)
    peaks = {"weights": 0.2, "primitives": 0.1, "gates": 0.02}

    # Zero gradient: only the weight decay moves anything, and only the weights.
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    for label, update, value in zip(
        jax.tree.leaves(labels), jax.tree.leaves(updates), jax.tree.leaves(params)
    ):
        decay = 0.25 if label == "weights" else 0.0
        np.testing.assert_allclose(update, -peaks[label] * decay * value, rtol=1e-6, atol=1e-9)

    # Unit gradient at zero parameters: the update is minus the group's learning rate.
    zero_params = jax.tree.map(jnp.zeros_like, params)
    ones = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(ones, tx.init(zero_params), zero_params)
    for label, update in zip(jax.tree.leaves(labels), jax.tree.leaves(updates)):
        np.testing.assert_allclose(update, -peaks[label], rtol=1e-6)


def numpy_torch_sgd(params, grad_fn, learning_rates, *, momentum, weight_decay, nesterov):
    """torch.optim.SGD (dampening 0) from its documented algorithm; one lr per step.

    Returns the parameters after every step.
    """
    params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    buffers, history = {}, []
    for step, lr in enumerate(learning_rates):
        grads = grad_fn(params)
        for name in params:
            g = grads[name] + weight_decay[name] * params[name]
            if momentum:
                buffers[name] = g.copy() if step == 0 else momentum * buffers[name] + g
                g = g + momentum * buffers[name] if nesterov else buffers[name]
            params[name] = params[name] - lr[name] * g
        history.append({k: v.copy() for k, v in params.items()})
    return history


@pytest.mark.parametrize("per", ["epoch", "step"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_matches_numpy_torch_sgd_with_changing_lr(per, nesterov):
    """The paper's training recipe: PyTorch SGD semantics per group over several steps while the lr changes."""
    steps_per_epoch, num_epochs = 2, 4
    config = optim_config(
        base_lr=0.3, weight_decay=0.05, gate_lr_scale=0.1, primitive_lr_scale=0.5,
        cosine_period_epochs=3, step_schedule_per=per, nesterov=nesterov,
    )
    flat = {
        "kernel": np.linspace(-1.0, 1.0, 6), "lambda_x": np.linspace(0.5, 1.5, 3),
        "tau": np.linspace(-0.3, 0.3, 4), "alpha": np.linspace(0.1, 0.4, 4),
    }
    scale = {k: 1.0 + 0.5 * i for i, k in enumerate(flat)}

    def grad_fn(p):  # gradient of sum(scale * (p - 0.7)^2 / 2) + a constant tilt
        return {k: scale[k] * (p[k] - 0.7) + 0.1 for k in p}

    peaks = {"kernel": 0.3, "lambda_x": 0.3, "tau": 0.15, "alpha": 0.03}
    decays = {"kernel": 0.05, "lambda_x": 0.05, "tau": 0.0, "alpha": 0.0}
    rates = []
    for step in range(steps_per_epoch * num_epochs):
        epoch = step // steps_per_epoch if per == "epoch" else step / steps_per_epoch
        rates.append({k: cosine_closed_form(peaks[k], epoch, 3) for k in flat})
    reference = numpy_torch_sgd(
        flat, grad_fn, rates, momentum=0.9, weight_decay=decays, nesterov=nesterov
    )

    # the flat tree is one neuron's scope with weights beside: its GLIF names are GLIF parameters
    tx = optim.make_optimizer(config, num_epochs=num_epochs, steps_per_epoch=steps_per_epoch, neuron_scopes=[""])
    params = {k: jnp.asarray(v, jnp.float32) for k, v in flat.items()}
    state = tx.init(params)
    update = jax.jit(tx.update)
    for step, expected in enumerate(reference):
        grads = {k: jnp.asarray(v, jnp.float32) for k, v in grad_fn(params).items()}
        updates, state = update(grads, state, params)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        for k in flat:
            np.testing.assert_allclose(params[k], expected[k], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{k} at step {step}")


def test_optimizer_options_read_config_optim_once_and_name_bad_fields():
    options = optim.OptimizerOptions.from_config(optim_config())
    assert options == optim.OptimizerOptions(base_lr=0.1, momentum=0.9, weight_decay=5e-5, gate_lr_scale=0.1)
    assert optim.OptimizerOptions.from_config(options) is options
    with pytest.raises(ValueError, match="^momentun: not an option of the optimiser; its options: base_lr, momentum"):
        optim.OptimizerOptions.from_config({"base_lr": 0.1, "momentun": 0.9})
    with pytest.raises(ValueError, match="^base_lr: required: the weights' learning rate"):
        optim.OptimizerOptions.from_config({"momentum": 0.9})
    for field, value, problem in [("momentum", 1.0, r"expected a number in \[0, 1\), got 1.0"),
                                  ("weight_decay", -1e-4, "expected a number >= 0"),
                                  ("primitive_lr_scale", "1", "expected a number >= 0, got '1'"),
                                  ("cosine_period_epochs", 0, "expected a number > 0, got 0"),
                                  ("nesterov", 1, "expected True or False"),
                                  ("step_schedule_per", "month", r"expected one of \('epoch', 'step'\)")]:
        with pytest.raises(OptionError, match=f"^{field}: {problem}") as error:
            optim.OptimizerOptions.from_config(optim_config(**{field: value}))
        assert error.value.option == field


def test_options_and_config_make_the_same_optimizer():
    """make_optimizer / learning_rates take the checked options or config.optim alike."""
    config = optim_config(step_schedule_per="step", cosine_period_epochs=3)
    options = optim.OptimizerOptions.from_config(config)
    for source in (config, options):
        rates = optim.learning_rates(source, num_epochs=4, steps_per_epoch=2)
        assert [float(rates["gates"](step)) for step in (0, 3)] == pytest.approx(
            [0.01, 0.01 * 0.5 * (1 + math.cos(math.pi * 1.5 / 3))])
    params = toy_params()
    grads = jax.tree.map(jnp.ones_like, params)
    updates = []
    for source in (config, options):
        optimizer = optim.make_optimizer(source, num_epochs=4, steps_per_epoch=2)
        updates.append(optimizer.update(grads, optimizer.init(params), params)[0])
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), *updates))


def test_the_schedule_and_sgd_functions_check_their_own_arguments():
    """Called directly (not through OptimizerOptions) they name their own arguments."""
    for kwargs, message in [(dict(peak_lr=-1.0), "^peak_lr: expected a number >= 0"),
                            (dict(period_epochs=0.0), "^period_epochs: expected a number > 0"),
                            (dict(steps_per_epoch=0), "^steps_per_epoch: expected an integer >= 1"),
                            (dict(steps_per_epoch=2.5), "^steps_per_epoch: expected an integer >= 1"),
                            (dict(per="month"), "^per: expected one of")]:
        call = dict(peak_lr=0.1, period_epochs=4, steps_per_epoch=2, per="epoch")
        call.update(kwargs)
        peak_lr = call.pop("peak_lr")
        with pytest.raises(OptionError, match=message):
            optim.cosine_annealing(peak_lr, **call)
    with pytest.raises(OptionError, match=r"^momentum: expected a number in \[0, 1\), got 1.5"):
        optim.torch_sgd(0.1, momentum=1.5)


def test_whole_float_sizes_and_attribute_objects_are_accepted():
    """num_epochs=4.0 is four epochs; any object with the fields as attributes is an optim config."""
    import types

    options = types.SimpleNamespace(**optim_config().to_dict())
    by_float = optim.learning_rates(options, num_epochs=4.0, steps_per_epoch=2.0)
    by_int = optim.learning_rates(optim_config(), num_epochs=4, steps_per_epoch=2)
    assert [float(by_float["weights"](step)) for step in range(8)] == [
        float(by_int["weights"](step)) for step in range(8)]

"""Every tool takes every neuron: the paper's networks, configs, glif-train, optimiser groups,
checkpoints and glif-plot with PLIF, the adaptive LIF and a user's own neuron."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glif_jax import analysis, models, neurons, optim
from glif_jax.checkpoint import Checkpointer, CheckpointError
from glif_jax.errors import OptionError
from glif_jax.neurons import MembraneState, Neuron, NeuronConfig, Parameter, Uniform
from glif_jax.train import cli

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = str(REPO / "configs" / "default.py")
SHORT = ["--config.num_epochs=1", "--config.steps_per_epoch=30", "--config.eval_steps=2",
         "--config.log_every_steps=10"]


def traced_params(name: str, neuron: NeuronConfig, time_steps: int = 2):
    model = models.get_model(name, num_classes=10, time_steps=time_steps, neuron=neuron)
    x = jax.ShapeDtypeStruct(model.spec.input.example_shape(time_steps), jnp.float32)
    return model, x, jax.eval_shape(lambda inputs: model.init(jax.random.PRNGKey(0), inputs, train=False),
                                     x)["params"]


@pytest.mark.parametrize("name", models.list_models())
def test_every_architecture_puts_plif_where_it_puts_glif(name):
    glif_model, x, glif_params = traced_params(name, NeuronConfig())
    plif_model, _, plif_params = traced_params(name, NeuronConfig(kind="plif"))
    glif_layers = analysis.network_order(glif_model, x, train=False)
    assert analysis.network_order(plif_model, x, train=False) == glif_layers
    assert list(neurons.neuron_scopes(plif_params, "plif")) == list(neurons.neuron_scopes(glif_params, "glif"))
    channels = {path: scope["v_th"].shape for path, scope in neurons.neuron_scopes(glif_params, "glif").items()}
    assert {path: scope["w"].shape for path, scope in neurons.neuron_scopes(plif_params).items()} == channels
    labels = jax.tree.leaves(optim.param_labels(plif_params, neuron=NeuronConfig(kind="plif")))
    assert labels.count("primitives") == len(glif_layers) and "gates" not in labels


def test_optimiser_groups_come_from_the_neurons_declaration():
    def step(state, params, inputs_t, time_step):
        membrane = params["mix"] * state.membrane + inputs_t
        spikes = neurons.spike(membrane - params["v_th"])
        return MembraneState(membrane, spikes), spikes

    gated = Neuron("test_groups", step, (Parameter("mix", Uniform(-0.2, 0.2), group="gates"),
                                         Parameter("v_th", 0.5), Parameter("scale", 1.0, constraint="softplus",
                                                                           group="weights")))
    params = {"conv": {"kernel": jnp.zeros(3)}, "neuron": {"mix": jnp.zeros(2), "v_th": jnp.zeros(2),
                                                           "scale": jnp.zeros(2)}}
    assert optim.param_labels(params, neuron=gated) == {
        "conv": {"kernel": "weights"}, "neuron": {"mix": "gates", "v_th": "primitives", "scale": "weights"}}
    glif_scope = {name: jnp.zeros(2) for name in neurons.get("glif").param_names}
    labels = optim.param_labels({"layer": glif_scope})["layer"]
    assert {name for name, group in labels.items() if group == "gates"} == {"alpha", "beta", "gamma"}
    assert {name for name, group in labels.items() if group == "primitives"} == {"tau", "lam", "v_th", "v_re", "cond"}


def test_resnet19_trains_with_plif_through_every_neuron_layer():
    model = models.get_model("resnet19", num_classes=10, time_steps=2, neuron=NeuronConfig(kind="plif"),
                             width_multiplier=0.0625)
    images = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
    variables = model.init(jax.random.PRNGKey(0), images, train=False)

    def loss(params):
        logits, _ = model.apply({**variables, "params": params}, images, train=True, mutable=["batch_stats"])
        return -jnp.mean(jax.nn.log_softmax(logits)[:, 3])

    grads = jax.jit(jax.grad(loss))(variables["params"])
    scopes = neurons.neuron_scopes(grads, "plif")
    assert len(scopes) == len(analysis.network_order(model, images, train=False)) > 10
    for path, scope in scopes.items():
        assert np.isfinite(scope["w"]).all(), path
    assert sum(bool(np.any(scope["w"] != 0)) for scope in scopes.values()) >= len(scopes) // 2


def train(workdir: Path, *overrides: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli._run("glif-train", cli._train, ["glif-train", "--config", DEFAULT_CONFIG, "--workdir",
                                                    str(workdir), *SHORT, *overrides])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def plif_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("plif_run")
    code, out, err = train(workdir, "--config.model.neuron.kind=plif",
                           "--config.model.neuron.options.plif.decay_input=False",
                           "--config.model.neuron.options.plif.v_threshold=0.5")
    assert code == 0, err[-3000:]
    return workdir, out


def test_glif_train_trains_the_default_network_with_plif(plif_run):
    workdir, out = plif_run
    final = json.loads(out.strip().splitlines()[-1])["final"]
    assert final["eval_top1"] > 0.3   # chance is 0.1
    saved = json.loads((workdir / "config.json").read_text())["model"]["neuron"]
    assert saved["kind"] == "plif" and saved["options"]["plif"]["decay_input"] is False


def test_glif_plot_draws_a_plif_runs_parameters(plif_run, tmp_path):
    workdir, _ = plif_run
    from glif_jax.analysis import cli as plot_cli

    out_dir = tmp_path / "figures"
    assert plot_cli.main([str(workdir), "--out", str(out_dir), "--batch-size", "8"]) == 0
    written = {path.name for path in out_dir.iterdir()}
    assert {"primitives.png", "firing_rates.png", "learned_values.csv"} <= written
    assert "gates.png" not in written and "conductance.png" not in written
    import pandas as pd

    table = pd.read_csv(out_dir / "learned_values.csv")
    assert set(table["parameter"]) == {"w"} and set(table["symbol"]) == {"1/τ"}
    assert table["value"].between(0, 1).all() and table["value"].nunique() > 1   # trained away from 0.5


def test_a_checkpoint_of_another_neuron_is_a_clear_error(tmp_path):
    glif_layer = {name: np.zeros(3, np.float32) for name in neurons.get("glif").param_names}
    with Checkpointer(tmp_path / "checkpoints", async_save=False) as checkpointer:
        checkpointer.save(1, {"params": {"stem": {"neuron": glif_layer}}}, {"epoch": 1})
    with Checkpointer(tmp_path / "checkpoints", read_only=True) as checkpointer:
        with pytest.raises(CheckpointError, match=r"stem/neuron holds the parameters of neuron 'glif' in the "
                                                  r"checkpoint .* and of neuron 'plif' in the model \(w\)"):
            checkpointer.restore({"params": {"stem": {"neuron": {"w": np.zeros(3, np.float32)}}}})


def config_error(*overrides: str, tmp_path: Path) -> str:
    code, _, err = train(tmp_path / "bad", *overrides)
    assert code == 2
    return err


def test_neuron_config_keys_are_checked_with_their_full_names(tmp_path):
    assert "config.model.neuron.kind: unknown neuron 'plf'; did you mean 'plif'" in config_error(
        "--config.model.neuron.kind=plf", tmp_path=tmp_path)
    assert ("config.model.neuron.options.plif.decay_input: set to False, but the neuron is 'glif'"
            in config_error("--config.model.neuron.options.plif.decay_input=False", tmp_path=tmp_path))
    with pytest.raises(OptionError, match="options.plif.decay_input: expected True or False, got 'no'"):
        models.ModelOptions.from_config({"name": "tiny_convnet", "time_steps": 2, "neuron": {
            "kind": "plif", "options": {"plif": {"decay_input": "no"}}}})
    assert "config.model.neuron.implementation: expected one of" in config_error(
        "--config.model.neuron.implementation=fast", tmp_path=tmp_path)
    assert "cannot import module 'not_a_module_xyz'" in config_error(
        "--config.model.neuron.kind=not_a_module_xyz:neuron", tmp_path=tmp_path)


def test_a_run_saved_before_the_neuron_keys_existed_resumes_without_a_config_change():
    from glif_jax.configs import base
    from glif_jax.train import config_changes

    current = base.digits("tiny_convnet", time_steps=4)
    saved = json.loads(current.to_json())
    for key in ("implementation", "unroll", "state_dtype", "options"):   # what configs of 0.2 lacked
        del saved["model"]["neuron"][key]
    assert config_changes.trajectory_changes(config_changes.changes(saved, current)) == {}
    with current.unlocked():
        current.model.neuron.implementation = "xla"
        current.model.neuron.options.plif.decay_input = False
    assert set(config_changes.trajectory_changes(config_changes.changes(saved, current))) == {
        "model.neuron.implementation", "model.neuron.options.plif.decay_input"}

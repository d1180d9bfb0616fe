"""glif-plot (glif_jax.analysis.cli): figures and tables from a run's work directory (the paper's appendix A.1).

The run is made here with glif_jax.checkpoint directly (registry model "tiny_convnet" on
the embedded digits, T = 2, three checkpoints with drifted parameters), independent of the
training loop; one end-to-end test trains 2 steps with train.train_and_evaluate first.
"""

from __future__ import annotations

import struct

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from configs import default
from glif_jax import models
from glif_jax.analysis.cli import main
from glif_jax.analysis.runs import open_run
from glif_jax.checkpoint import CheckpointError, Checkpointer, save_config

STEPS = (10, 20, 30)
BEST_STEP = 20
FIGURES = ("gates", "primitives", "conductance", "evolution", "firing_rates")


def numpy_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def make_run(workdir, *, steps=STEPS, dataset_overrides=None):
    """A work directory as glif-train lays it out; returns {step: params saved}."""
    config = default.get_config()
    config.model.time_steps = 2
    for key, value in (dataset_overrides or {}).items():
        config.dataset[key] = value
    model = models.from_config(config.model, 10)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), train=False)
    save_config(workdir, config)
    rng = np.random.default_rng(0)
    saved = {}
    with Checkpointer(workdir / "checkpoints", keep=3, async_save=False) as checkpointer:
        for epoch, step in enumerate(steps, start=1):
            params = jax.tree.map(lambda x: np.asarray(x) + rng.normal(0, 0.2 * epoch, np.shape(x)).astype(np.float32),
                                  variables["params"])
            state = {"step": np.int32(step), "params": params, "batch_stats": variables["batch_stats"],
                     "opt_state": {"momentum": params}, "rng": np.zeros(2, np.uint32)}
            checkpointer.save(step, state, {"epoch": epoch, "eval_top1": 0.5 if step == BEST_STEP else 0.1})
            saved[step] = params
    return saved


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    return workdir, make_run(workdir)


@pytest.fixture(scope="module")
def plotted(run, tmp_path_factory):
    workdir, saved = run
    out = tmp_path_factory.mktemp("figures")
    status = main([str(workdir), "--out", str(out), "--pdf", "--batch-size", "16"])
    return status, out, saved


def test_glif_plot_writes_every_figure_as_png_and_pdf(plotted):
    status, out, _ = plotted
    assert status == 0
    for stem in FIGURES:
        width, height = png_size(out / f"{stem}.png")
        assert width > 300 and height > 300, stem
        assert (out / f"{stem}.png").stat().st_size > 10_000, stem
        assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-", stem


def test_learned_values_table_holds_the_latest_checkpoint_in_network_order(plotted):
    _, out, saved = plotted
    table = pd.read_csv(out / "learned_values.csv")
    assert set(table["step"]) == {STEPS[-1]} and set(table["checkpoint"]) == {"latest"}
    layers = table.drop_duplicates("layer_index")[["layer_index", "layer", "path"]].values.tolist()
    assert layers == [[0, "stem", "stem/neuron"], [1, "conv1", "conv1/neuron"]]  # not the sorted key order
    logits = saved[STEPS[-1]]["conv1"]["neuron"]
    v_th = table[(table.layer == "conv1") & (table.parameter == "v_th")].sort_values("channel")
    np.testing.assert_allclose(v_th["value"], numpy_sigmoid(logits["v_th"]), rtol=1e-6)
    cond = table[(table.layer == "stem") & (table.parameter == "cond")]
    assert len(cond) == logits["cond"].shape[0] * saved[STEPS[-1]]["stem"]["neuron"]["cond"].shape[1]
    json_table = pd.read_json(out / "learned_values.json")
    np.testing.assert_allclose(json_table["value"], table["value"], rtol=1e-9)


def test_summary_covers_every_checkpoint_and_firing_rates_every_layer(plotted):
    _, out, saved = plotted
    summary = pd.read_csv(out / "learned_summary.csv")
    assert sorted(set(summary["step"])) == list(STEPS)
    row = summary[(summary.step == 10) & (summary.layer == "stem") & (summary.parameter == "alpha")].iloc[0]
    assert row["median"] == pytest.approx(np.median(numpy_sigmoid(saved[10]["stem"]["neuron"]["alpha"])), rel=1e-6)
    assert row["epoch"] == 1
    rates = pd.read_csv(out / "firing_rates.csv")
    assert list(rates.drop_duplicates("layer_index")["layer"]) == ["stem", "conv1"]
    assert rates["rate"].between(0, 1).all()
    channels = {name: saved[10][name]["neuron"]["v_th"].size for name in ("stem", "conv1")}
    assert len(rates) == 2 * (channels["stem"] + channels["conv1"])  # T = 2


def test_checkpoint_selection(run):
    workdir, _ = run
    assert open_run(workdir).selected.step == STEPS[-1]
    assert open_run(workdir, which="best").selected.step == BEST_STEP
    assert open_run(workdir, step=10).selected.step == 10
    named = open_run(workdir / "checkpoints" / "latest" / "20")
    assert (named.selected.kind, named.selected.step) == ("latest", 20)
    assert named.config.model.name == "tiny_convnet"
    assert [ref.step for ref in named.checkpoints] == list(STEPS)
    with pytest.raises(CheckpointError, match="available steps"):
        open_run(workdir, step=11)


def test_missing_dataset_skips_only_the_firing_rate_figure(tmp_path, capsys):
    workdir = tmp_path / "run"
    make_run(workdir, steps=(5,), dataset_overrides=dict(name="npz", eval_path=str(tmp_path / "absent.npz"),
                                                        normalization="cifar10"))
    out = tmp_path / "figures"
    assert main([str(workdir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped firing_rates.png" in printed and "npz" in printed and "--data-dir" in printed
    assert not (out / "firing_rates.png").exists()
    for stem in ("gates", "primitives", "conductance", "evolution"):  # evolution: initialisation -> step 5
        assert png_size(out / f"{stem}.png")[0] > 300


def test_bad_command_lines(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2  # --out missing
    assert "--out" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1
    assert "no checkpoints" in capsys.readouterr().err


def test_end_to_end_after_a_two_step_training_run(tmp_path):
    from train.train import train_and_evaluate

    config = default.get_config()
    config.num_epochs, config.steps_per_epoch, config.eval_steps = 1, 2, 1
    config.batch_size, config.eval_batch_size = 16, 16
    config.checkpoint.async_save = False
    workdir = tmp_path / "run"
    train_and_evaluate(config, workdir)
    out = workdir / "figures"
    assert main([str(workdir), "--out", str(out), "--batch-size", "8"]) == 0
    for stem in FIGURES:
        assert png_size(out / f"{stem}.png")[0] > 300, stem
    table = pd.read_csv(out / "learned_values.csv")
    assert set(table["step"]) == {2}
    assert table["value"].between(0, 1).all()

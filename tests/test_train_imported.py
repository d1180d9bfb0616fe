"""The authors' checkpoints in the training system: glif-eval --from-gated-lif, glif-train
--init-from, glif-plot on one — on the ResNet-18 fixture (width 1/32, T = 2, 10 classes;
tests/fixtures/gated_lif) and a tiny CIFAR-shaped .npz written here."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from glif_jax import data
from glif_jax.gated_lif import from_gated_lif, read_state_dict
from glif_jax.train import cli, metrics
from tests.comparison import assert_bit_identical, assert_tree_close

REPO = Path(__file__).resolve().parents[1]
FIXTURE = str(REPO / "tests" / "fixtures" / "gated_lif" / "resCifar18stand-CIFAR10-step2-CW.pth.tar")
NPZ_CONFIG = str(REPO / "configs" / "cifar10_npz_resnet18_t4.py")


@pytest.fixture(scope="module")
def npz_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("npz")
    rng = np.random.default_rng(0)
    paths = {}
    for name, classes in (("ten", 10), ("five", 5)):
        path = folder / f"{name}.npz"
        np.savez(path, x=rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), y=rng.integers(0, classes, 12),
                 classes=np.array([str(index) for index in range(classes)]))
        paths[name] = str(path)
    return paths


@pytest.fixture(scope="module")
def their_network():
    """(model, variables) of the fixture, converted once for the module."""
    return from_gated_lif(FIXTURE)


# Their GLIF parameter names (keys of the file) for glif-jax's (glif_jax.neuron.PARAM_NAMES)
THEIR_NAMES = {"alpha": "alpha", "beta": "beta", "gamma": "gamma", "tau": "tau", "lam": "leak", "v_th": "Vth",
               "v_re": "reVth", "cond": "conduct"}


def their_batch_statistics(path: str) -> dict:
    """The running means and variances of their ResNet-18 file, read from its tensors and
    placed by their module names (``conv1.0.module.1``: the stem; ``features.<i>``: block
    ``i % 2 + 1`` of stage ``i // 2 + 1``) in glif-jax's ``batch_stats`` tree."""
    stats: dict = {}
    for key, value in read_state_dict(path).items():
        if not key.endswith(("running_mean", "running_var")):
            continue
        module, statistic = key.rsplit(".", 1)
        parts = module.split(".")
        if parts[0] == "conv1":
            ours = ("stem", "conv_norm", "norm")
        else:
            index, where = int(parts[1]), ".".join(parts[2:])
            block = f"stage{index // 2 + 1}_block{index % 2 + 1}"
            ours = (block, *{"body.0.module.1": ("conv_norm1", "norm"), "body.2.module.1": ("conv_norm2", "norm"),
                              "downsample.module": ("shortcut", "norm"),
                              "downsample.0.module.1": ("shortcut", "conv_norm", "norm")}[where])
        node = stats
        for name in ours:
            node = node.setdefault(name, {})
        node["mean" if statistic == "running_mean" else "var"] = value
    return stats


def overrides(npz: str, time_steps: int = 2) -> list[str]:
    return [f"--config.model.time_steps={time_steps}", f"--config.dataset.train_path={npz}",
            f"--config.dataset.eval_path={npz}", "--config.eval_batch_size=8", "--config.batch_size=4"]


def run(main, program, *args, capsys):
    code = cli._run(program, main, [program, *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("keep", [True, False])
def test_glif_eval_of_an_imported_checkpoint_scores_its_network(npz_files, their_network, tmp_path, capsys,
                                                                 monkeypatch, keep):
    """The score glif-eval prints is the imported network's on the configured test split
    (computed here from from_gated_lif's model and the data floor's batches), and --workdir
    keeps the import as a glif-jax run with the width read from the file; without it nothing
    is written."""
    monkeypatch.chdir(tmp_path)
    workdir = ["--workdir", str(tmp_path / "imported")] if keep else []
    code, out, err = run(cli._eval, "glif-eval", "--from-gated-lif", FIXTURE, "--config", NPZ_CONFIG,
                         *overrides(npz_files["ten"]), *workdir, capsys=capsys)
    assert code == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])["eval"]
    model, variables = their_network
    dataset = {"name": "npz", "train_path": npz_files["ten"], "eval_path": npz_files["ten"],
               "normalization": "cifar10"}
    batches, _ = data.build(dataset, split="eval", batch_size=8, seed=0, train=False)
    totals = metrics.MeanAccumulator()
    apply = jax.jit(lambda images: model.apply(variables, images, train=False))
    for batch in batches:
        logits = apply(batch["image"])
        totals.add(metrics.batch_sums(logits, batch["label"], batch["mask"]))
    expected = totals.result()
    assert result["eval_count"] == 12 and result["step"] == 0
    assert result["eval_top1"] == pytest.approx(expected["top1"])
    assert result["eval_loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert ("the imported run is in" in out) == keep
    if not keep:
        assert list(tmp_path.iterdir()) == []
        return
    saved = json.loads((tmp_path / "imported" / "config.json").read_text())
    assert saved["model"]["kwargs"]["width_multiplier"] == pytest.approx(1 / 32)
    assert (tmp_path / "imported" / "checkpoints" / "0" / "state").is_dir()


@pytest.mark.parametrize("config_args, message", [
    (["--config.model.time_steps=4"], "holds a network for T=2, but config.model.time_steps=4"),
    (["--config.model.name=resnet19"], "resnet19"),
])
def test_glif_eval_refuses_a_checkpoint_that_does_not_fit_the_config(npz_files, capsys, config_args, message):
    code, _, err = run(cli._eval, "glif-eval", "--from-gated-lif", FIXTURE, "--config", NPZ_CONFIG,
                       *overrides(npz_files["ten"]), *config_args, capsys=capsys)
    assert code == 1 and message in err and "Traceback" not in err


def test_glif_eval_refuses_another_class_count(npz_files, capsys):
    code, _, err = run(cli._eval, "glif-eval", "--from-gated-lif", FIXTURE, "--config", NPZ_CONFIG,
                       *overrides(npz_files["five"]), capsys=capsys)
    assert code == 1 and "classifies 10 classes, but the configured dataset 'npz' has 5" in err


def test_glif_train_init_from_starts_from_their_parameters_and_statistics(npz_files, their_network, tmp_path,
                                                                          capsys):
    """With a zero learning rate, one step leaves the parameters as imported, and the tdBN
    running statistics are the file's moved once towards the first batch's: the run really
    started from both (and took the width from the file)."""
    from glif_jax.checkpoint import Checkpointer
    from glif_jax.train.experiment import build_experiment
    from glif_jax.train.validation import validate_config
    from glif_jax.workdir import load_config

    code, _, err = run(cli._train, "glif-train", "--config", NPZ_CONFIG, *overrides(npz_files["ten"]),
                       "--config.num_epochs=1", "--config.steps_per_epoch=1", "--config.optim.base_lr=0.0",
                       "--init-from", FIXTURE, "--workdir", str(tmp_path / "run"), capsys=capsys)
    assert code == 0, err[-3000:]
    assert "starting from the parameters of" in err
    with Checkpointer(tmp_path / "run" / "checkpoints", read_only=True) as checkpointer:
        state, _ = checkpointer.restore()
    model, variables = their_network
    assert_bit_identical(state["params"], variables["params"])
    assert int(state["step"]) == 1
    config = load_config(tmp_path / "run")
    first_batch = next(iter(build_experiment(config, validate_config(config)).train_batches(0)))
    _, updated = model.apply({"params": variables["params"], "batch_stats": their_batch_statistics(FIXTURE)},
                             first_batch["image"], train=True, mutable=["batch_stats"])
    assert_tree_close(state["batch_stats"], updated["batch_stats"], rtol=1e-5, atol=1e-7)


def test_glif_plot_draws_an_imported_checkpoint(npz_files, tmp_path):
    """The learned-values table of the figures holds the sigmoid of every GLIF logit stored in
    their file (the stem's, by channel and time step)."""
    import pandas as pd

    with pytest.raises(SystemExit) as exited:
        cli.plot_main(["glif-plot", FIXTURE, "--config", NPZ_CONFIG, *overrides(npz_files["ten"]),
                       "--out", str(tmp_path / "figures"), "--batch-size", "4"])
    code = exited.value.code
    assert code == 0
    assert (tmp_path / "figures" / "gates.png").is_file()
    values = pd.read_csv(tmp_path / "figures" / "learned_values.csv")
    theirs = read_state_dict(FIXTURE)
    for ours, their_name in THEIR_NAMES.items():
        logits = theirs[f"conv1.1.{their_name}"].astype(np.float64)   # [C], conduct [T, C]
        rows = values[(values.layer == "stem") & (values.parameter == ours)].sort_values(["time_step", "channel"])
        assert_tree_close(rows["value"].to_numpy(np.float64), 1 / (1 + np.exp(-logits.reshape(-1))), rtol=1e-6)


@pytest.mark.parametrize("with_config, extra, problem", [
    (True, ["--config.model.neuron.gates=fuzzy"],
     "config.model.neuron.gates: expected one of ('soft', 'hard'), got 'fuzzy'"),
    (True, ["--config.no_such_key=1"], "no_such_key"),
    (False, [], "an authors' checkpoint needs --config FILE"),
])
def test_glif_plot_of_an_imported_checkpoint_reports_a_bad_command_line_in_one_line(npz_files, tmp_path, capsys,
                                                                                  with_config, extra, problem):
    config = ["--config", NPZ_CONFIG, *overrides(npz_files["ten"])] if with_config else []
    with pytest.raises(SystemExit) as exited:
        cli.plot_main(["glif-plot", FIXTURE, *config, *extra, "--out", str(tmp_path / "figures")])
    err = capsys.readouterr().err
    assert exited.value.code == 2, err[-3000:]
    assert "glif-plot: error: " in err and problem in err
    assert "Traceback" not in err
    assert not (tmp_path / "figures").exists()


def test_their_variables_must_fit_the_configured_model(npz_files):
    """Starting from their checkpoint with a config of another width (not adapted through
    ``config_for``) is refused, naming the file, the configured model and a mismatched path."""
    from glif_jax.configs import base
    from glif_jax.gated_lif import GatedLIFFormatError
    from glif_jax.train import imported
    from glif_jax.train.experiment import build_experiment
    from glif_jax.train.train import initial_state
    from glif_jax.train.validation import validate_config

    config = base.cifar_npz("resnet18", time_steps=2, num_epochs=1, model_overrides={"width_multiplier": 1 / 16},
                            train_path=npz_files["ten"], eval_path=npz_files["ten"])
    with config.unlocked():
        config.update(dict(batch_size=4, eval_batch_size=4))
    experiment = build_experiment(config, validate_config(config))
    fresh = initial_state(config, experiment)
    with pytest.raises(GatedLIFFormatError, match=r"their variables do not fit the configured model \(.*resCifar18stand"
                                                  r".*\): .*\['stage1_block1'\].*: their variables \(2,\), the "
                                                  r"model \(4,\)"):
        imported.initial_state_from(config, experiment, fresh, FIXTURE)

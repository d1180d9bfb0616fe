"""glif_jax.train.cli and glif_jax.train.validation: --help, rejected keys and values, entry points.

The commands run in-process (`train.cli._run` is what `glif-train` / `glif-eval` call) so
no test pays for a new interpreter, except one check that `python -m glif_jax.train` works.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from glif_jax.train import cli
from glif_jax.train.validation import ConfigError, validate_config
from tests.train_standins import small_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = str(REPO / "configs" / "default.py")


def glif_train(*args, capsys):
    code = cli._run("glif-train", cli._train, ["glif-train", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model.time_steps": 0}, "config.model.time_steps: expected an integer >= 1, got 0"),
        ({"model.name": "resnet_9000"}, "config.model.name: unknown model 'resnet_9000'; registered models: resnet18"),
        ({"model.init": "mnist"}, "config.model.init: unknown preset 'mnist'"),
        ({"model.init": {"tau": 0.5}}, "config.model.init: expected values for ('tau', 'lam', 'v_th', 'v_re', 'cond')"),
        ({"model.init": dict(tau=0.25, lam=0.0625, v_th=0.5, v_re=0.5, cond=1.0)},
         "config.model.init.cond: values live in (0, 1)"),
        ({"model.remat": 1}, "config.model.remat: expected True or False, got 1"),
        ({"dataset.name": "mnist"}, "config.dataset.name: unknown dataset 'mnist'; known names: digits"),
        ({"dataset.prefetch": -1}, "config.dataset.prefetch: expected an integer >= 0, got -1"),
        ({"dataset.normalization": "mnist"}, "config.dataset.normalization: expected one of"),
        ({"parallel": "horovod"}, "config.parallel: expected one of ('none', 'pmap', 'mesh'), got 'horovod'"),
        ({"num_epochs": 0}, "config.num_epochs: expected an integer >= 1, got 0"),
        ({"steps_per_epoch": 0}, "config.steps_per_epoch: expected an integer >= 1 or None"),
        ({"batch_size": -8}, "config.batch_size: expected an integer >= 1"),
        ({"half_precision": None}, "config.half_precision: expected True or False, got None"),
        ({"checkpoint.keep": 0}, "config.checkpoint.keep: expected an integer >= 1"),
        ({"nonfinite.action": "ignore"}, "config.nonfinite.action: expected one of ('stop', 'skip'), got 'ignore'"),
        ({"model.neuron.gates": "fuzzy"}, "config.model.neuron.gates: expected one of ('soft', 'hard'), got 'fuzzy'"),
        ({"model.neuron.kind": "izhikevich"}, "config.model.neuron.kind: unknown neuron 'izhikevich'"),
        ({"model.neuron.surrogate": "step"}, "config.model.neuron.surrogate: unknown name 'step'"),
        ({"model.neuron.surrogate_width": -1.0}, "config.model.neuron.surrogate_width: expected a number > 0, got -1.0"),
        ({"model.neuron.static_gates": "yes"}, "config.model.neuron.static_gates: expected True or False, got 'yes'"),
        ({"model.kwargs": {"no_such_option": 1}},
         "config.model.kwargs.no_such_option: model 'tiny_convnet' has no option(s) ['no_such_option']"),
        ({"model.kwargs": {"width_multiplier": 0.0}},
         "config.model.kwargs.width_multiplier: expected a finite number > 0, got 0.0"),
        ({"optim.momentum": 1.0}, "config.optim.momentum: expected a number in [0, 1), got 1.0"),
        ({"optim.base_lr": -0.1}, "config.optim.base_lr: expected a number >= 0, got -0.1"),
        ({"optim.cosine_period_epochs": 0}, "config.optim.cosine_period_epochs: expected a number > 0, got 0"),
        ({"optim.nesterov": True, "optim.momentum": 0.0}, "config.optim.nesterov: nesterov=True needs momentum > 0"),
        ({"optim.step_schedule_per": "month"}, "config.optim.step_schedule_per: expected one of ('epoch', 'step')"),
    ],
)
def test_invalid_values_are_rejected_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as error:
        validate_config(small_config(**overrides))
    assert message in str(error.value)


def test_a_section_that_is_not_a_section_or_lacks_a_key_is_a_config_error():
    for key in ("dataset", "model", "optim"):
        config = small_config()
        with config.unlocked():
            del config[key]
            config[key] = 3
        with pytest.raises(ConfigError, match=f"^config.{key}: expected a section of keys"):
            validate_config(config)
    config = small_config()
    with config.unlocked():
        del config.model["name"]
    with pytest.raises(ConfigError, match="^config.model.name: unknown model None"):
        validate_config(config)
    with config.unlocked():
        del config["seed"]
    with pytest.raises(ConfigError, match="^config.seed is missing"):
        validate_config(config)


def test_validation_returns_what_the_floors_read_and_the_strategy():
    options = validate_config(small_config(**{"optim.base_lr": 0.5, "model.time_steps": 3, "dataset.prefetch": 1}),
                              device_count=1)
    assert (options.optimizer.base_lr, options.model.time_steps, options.dataset.prefetch) == (0.5, 3, 1)
    assert options.model.spec.name == "tiny_convnet" and options.strategy.name == "none"


def test_an_npz_run_needs_both_files():
    config = small_config(**{"dataset.name": "npz", "dataset.normalization": "cifar10",
                             "dataset.train_path": "/data/train.npz"})
    with pytest.raises(ConfigError, match=r"^config.dataset.eval_path: required for the 'npz' dataset"):
        validate_config(config)


def test_batch_sizes_must_divide_over_the_devices():
    validate_config(small_config(parallel="pmap", batch_size=8, eval_batch_size=8), device_count=4)
    with pytest.raises(ConfigError, match=r"config.batch_size=6 must be divisible by the 4 devices"):
        validate_config(small_config(parallel="mesh", batch_size=6), device_count=4)
    with pytest.raises(ConfigError, match=r"config.eval_batch_size=10 must be divisible by the 4 devices"):
        validate_config(small_config(parallel="pmap", eval_batch_size=10), device_count=4)
    validate_config(small_config(parallel="none", batch_size=6), device_count=4)  # one device used
    with pytest.raises(ConfigError, match="cannot run on 2 processes"):
        validate_config(small_config(parallel="none"), process_count=2)


def test_default_config_is_valid():
    from glif_jax.configs import default

    validate_config(default.get_config())


def test_help_explains_the_flags_and_lists_the_config(capsys):
    with pytest.raises(SystemExit) as exit_info:
        glif_train("--help", capsys=capsys)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for text in ("--config FILE", "--config.<key>=<value>", "--workdir DIR", "--resume", "--distributed",
                 "python -m glif_jax.train", "metrics.jsonl", "half_precision", "parallel"):
        assert text in out
    with pytest.raises(SystemExit):
        glif_train("--config", DEFAULT_CONFIG, "--help", capsys=capsys)
    out = capsys.readouterr().out
    assert "config.model.time_steps = 4" in out
    assert "config.model.neuron.kind = 'glif'" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config.foo=1"], "unknown config key --config.foo: config has no field 'foo'; its fields: batch_size,"),
        (["--config.model.nme=x"],
         "unknown config key --config.model.nme: config.model has no field 'nme' (did you mean name?)"),
        (["--config.seed=1", "--config.model.neuron.gate=hard"],
         "unknown config key --config.model.neuron.gate: config.model.neuron has no field 'gate' (did you mean "
         "gates"),
        (["--config.num_epochs=abc"], "--config.num_epochs=abc"),
        (["--config.model.time_steps=0"], "config.model.time_steps: expected an integer >= 1, got 0"),
        (["--config.model.name=resnet_9000"], "config.model.name: unknown model 'resnet_9000'"),
        (["--config.dataset.name=mnist"], "config.dataset.name: unknown dataset 'mnist'"),
        (["--config.batch_size=0"], "config.batch_size: expected an integer >= 1, got 0"),
        (["unexpected"], "unexpected arguments: unexpected"),
    ],
)
def test_bad_command_lines_exit_2_with_a_message(args, message, capsys, tmp_path):
    code, _, err = glif_train("--config", DEFAULT_CONFIG, "--workdir", str(tmp_path), *args, capsys=capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "checkpoints").exists()  # rejected before any work


def test_missing_flags_and_files_exit_2(capsys, tmp_path):
    code, _, err = glif_train("--config", DEFAULT_CONFIG, capsys=capsys)
    assert code == 2 and "--workdir DIR is required" in err
    code, _, err = glif_train("--workdir", str(tmp_path), capsys=capsys)
    assert code == 2 and "--config FILE is required" in err
    code, _, err = glif_train("--config", str(tmp_path / "nope.py"), "--workdir", str(tmp_path), capsys=capsys)
    assert code == 2 and "nope.py" in err


def test_eval_of_a_directory_without_a_run_is_a_clear_error(capsys, tmp_path):
    code = cli._run("glif-eval", cli._eval, ["glif-eval", "--workdir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "no config.json" in err
    code = cli._run("glif-eval", cli._eval, ["glif-eval"])
    assert code == 2 and "--workdir DIR is required" in capsys.readouterr().err


def test_plot_dispatches_to_the_analysis_cli(monkeypatch):
    calls = []
    fake = types.ModuleType("glif_jax.analysis.cli")
    fake.main = lambda argv: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "glif_jax.analysis.cli", fake)
    import glif_jax.analysis as analysis_package

    monkeypatch.setattr(analysis_package, "cli", fake, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.plot_main(["glif-plot", "--workdir", "w"])
    assert exit_info.value.code == 0
    assert calls == [["--workdir", "w"]]


def test_python_dash_m_glif_jax_train_is_the_train_command():
    """From any directory: the training system is the installed glif_jax.train, not a checkout's
    top-level folder (nothing named ``train`` or ``configs`` is importable from elsewhere)."""
    outside = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "glif_jax.train", "--help"], cwd=outside, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0
    assert "usage: glif-train" in result.stdout
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u; print(u.find_spec('train'), "
                            "u.find_spec('configs'), u.find_spec('glif_jax.configs.default') is not None)"],
                           cwd=outside, capture_output=True, text=True, timeout=120)
    assert probe.stdout.split() == ["None", "None", "True"], probe.stderr


# ---- the real glif-train as a cluster runs it: signals, divergence, requeue ------------------
def launch_glif_train(workdir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "glif_jax.train", "--config", DEFAULT_CONFIG, "--workdir", str(workdir), *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_sigterm_saves_a_checkpoint_and_resume_auto_finishes_the_run(tmp_path):
    """SIGTERM to a training glif-train (as a cluster preempts): it saves a checkpoint of the
    step it is on and exits 143 without a traceback; the same command with --resume=auto
    continues from that step and finishes."""
    import signal

    from glif_jax.checkpoint import Checkpointer

    short = ["--config.num_epochs=2", "--config.batch_size=8", "--config.steps_per_epoch=100",
             "--config.eval_steps=1", "--config.log_every_steps=1", "--resume=auto"]
    process = launch_glif_train(tmp_path, *short)
    for line in process.stderr:   # wait until training is under way
        if " INFO glif_jax.train.train: step " in line:
            break
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-3000:]
    assert "Traceback" not in err
    assert "glif-train: stopped by SIGTERM at step" in err
    stopped_at = int(err.split("stopped by SIGTERM at step ")[1].split(";")[0])
    assert 0 < stopped_at < 200
    with Checkpointer(tmp_path / "checkpoints", read_only=True) as checkpointer:
        assert checkpointer.latest_step() == stopped_at
    assert not [path for path in (tmp_path / "checkpoints").iterdir() if "tmp" in path.name]

    resumed = launch_glif_train(tmp_path, *short)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert f"resumed from step {stopped_at}" in err
    assert '"step": 200' in out.splitlines()[-1]


def test_a_diverging_run_exits_1_naming_the_step_and_reports_no_accuracy(tmp_path):
    process = launch_glif_train(tmp_path, "--config.optim.base_lr=1e8", "--config.log_every_steps=5")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err[-3000:]
    assert "glif-train: error: training diverged: the loss is not finite at step" in err
    assert "final test" not in out


@pytest.mark.parametrize("args, mode", [
    ([], "no"), (["--resume"], "yes"), (["--resume=auto"], "auto"), (["--resume", "auto"], "auto"),
    (["--resume=yes"], "yes"), (["--noresume"], "no"), (["--resume=false"], "no"),
])
def test_resume_flag_spellings(monkeypatch, tmp_path, args, mode):
    calls = []
    monkeypatch.setattr("glif_jax.train.train.train_and_evaluate",
                        lambda config, workdir, **options: calls.append(options) or {})
    monkeypatch.setattr(cli, "_summary", lambda label, results: "")
    code = cli._run("glif-train", cli._train,
                    ["glif-train", "--config", DEFAULT_CONFIG, "--workdir", str(tmp_path), *args])
    assert code == 0
    assert calls[0]["resume"] == mode and calls[0]["allow_config_change"] is False


def test_an_unknown_resume_mode_exits_2(capsys, tmp_path):
    code = cli._run("glif-train", cli._train,
                    ["glif-train", "--config", DEFAULT_CONFIG, "--workdir", str(tmp_path), "--resume=maybe"])
    assert code == 2
    assert "--resume=maybe" in capsys.readouterr().err

"""glif_jax.distributed and the launch flags of glif-train / glif-eval: who a process is, from its
flags or the environment, and clear errors for values that cannot work (no process is started
here; tests/test_multiprocess.py runs real multi-process runs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from glif_jax.train import cli

from glif_jax import distributed
from glif_jax.distributed import LaunchError, LaunchSettings, launch_settings
from tests.train_standins import small_config

DEFAULT_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "default.py")


def test_nothing_given_leaves_a_single_process_run_alone():
    assert launch_settings(environ={}) == LaunchSettings(requested=False)
    assert launch_settings(force=True, environ={}).requested   # --distributed: JAX detects the values


def test_flags_and_environment_variables_are_the_same_settings():
    from_flags = launch_settings(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3, environ={})
    from_env = launch_settings(environ={"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
                                        "JAX_PROCESS_ID": "3"})
    assert from_flags == from_env == LaunchSettings(True, "10.0.0.1:1234", 4, 3)
    # one value alone turns jax.distributed on; the rest is left to JAX's detection
    assert launch_settings(environ={"JAX_PROCESS_ID": "1"}) == LaunchSettings(True, None, None, 1)
    assert launch_settings(num_processes=4, environ={"JAX_NUM_PROCESSES": "4"}).num_processes == 4


@pytest.mark.parametrize("arguments, environ, message", [
    (dict(num_processes=2), {"JAX_NUM_PROCESSES": "3"},
     r"--num_processes=2 disagrees with the environment's JAX_NUM_PROCESSES=3"),
    (dict(coordinator_address="a:1"), {"JAX_COORDINATOR_ADDRESS": "b:1"}, r"--coordinator_address=a:1 disagrees"),
    (dict(num_processes=2, process_id=2), {}, r"--process_id=2 is not below --num_processes=2 \(process ids are 0 .. 1\)"),
    (dict(process_id=-1), {}, r"--process_id \(or JAX_PROCESS_ID\): expected an integer >= 0, got -1"),
    (dict(num_processes=0), {}, r"--num_processes \(or JAX_NUM_PROCESSES\): expected an integer >= 1, got 0"),
    (dict(coordinator_address="node7"), {}, r"expected HOST:PORT, got 'node7'"),
    (dict(coordinator_address="node7:port"), {}, r"expected HOST:PORT, got 'node7:port'"),
    ({}, {"JAX_PROCESS_ID": "first"}, r"JAX_PROCESS_ID='first': expected an integer"),
    (dict(heartbeat_timeout_seconds=0), {}, r"--heartbeat_timeout_seconds: expected an integer >= 1, got 0"),
])
def test_inconsistent_or_invalid_values_are_refused_naming_them(arguments, environ, message):
    with pytest.raises(LaunchError, match=message):
        launch_settings(environ=environ, **arguments)


def test_values_jax_cannot_complete_are_a_launch_error(monkeypatch):
    def initialize(*args, **kwargs):
        raise ValueError("coordinator_address should be defined.")

    monkeypatch.setattr("jax.distributed.initialize", initialize)
    with pytest.raises(LaunchError, match=r"coordinator_address should be defined.*give all three of "
                                          r"--coordinator_address, --num_processes and --process_id"):
        distributed.initialize(LaunchSettings(requested=True, num_processes=2, process_id=0))


def test_the_settings_reach_jax_distributed(monkeypatch):
    calls = []
    monkeypatch.setattr("jax.distributed.initialize", lambda *args, **kwargs: calls.append((args, kwargs)))
    distributed.initialize(LaunchSettings(True, "node0:1234", 2, 1, heartbeat_timeout_seconds=7))
    distributed.initialize(LaunchSettings(requested=False, process_id=1))
    assert calls == [(("node0:1234", 2, 1), {"heartbeat_timeout_seconds": 7})]


def test_glif_train_and_glif_eval_exit_2_on_inconsistent_launch_flags(monkeypatch, tmp_path, capsys):
    from glif_jax.workdir import save_config

    monkeypatch.setenv("JAX_NUM_PROCESSES", "3")
    monkeypatch.setattr("jax.distributed.initialize", lambda *a, **k: pytest.fail("must not start"))
    code = cli._run("glif-train", cli._train, ["glif-train", "--config", DEFAULT_CONFIG, "--workdir", str(tmp_path),
                                               "--num_processes", "2", "--process_id", "0"])
    assert code == 2
    assert "glif-train: error: --num_processes=2 disagrees with the environment's JAX_NUM_PROCESSES=3" in (
        capsys.readouterr().err)
    save_config(tmp_path, small_config())
    code = cli._run("glif-eval", cli._eval, ["glif-eval", "--workdir", str(tmp_path), "--process_id", "5"])
    assert code == 2
    assert "glif-eval: error: --process_id=5 is not below --num_processes=3" in capsys.readouterr().err

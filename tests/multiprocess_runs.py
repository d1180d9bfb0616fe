"""Real ``glif-train`` processes on this machine, for the multi-process and workdir-lock tests.

A *run* is one or more ``python -m glif_jax.train`` processes on the digits + tiny_convnet
config of :data:`TINY_RUN` (a few seconds each). Several processes form one
``jax.distributed`` job on localhost (a free port, Gloo collectives between CPU processes),
each process with :data:`DEVICES_PER_PROCESS` simulated CPU devices. Output goes to files
(``<logs>/<name>.<process>.out|err``), so that no pipe fills up while a test waits.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
DEVICES_PER_PROCESS = 2
HEARTBEAT_TIMEOUT_SECONDS = 10   # how long the coordinator waits for a dead process (short, not flaky)
TOTAL_STEPS = 30

TINY_RUN = (
    "--config", str(REPO / "configs" / "default.py"),
    "--config.model.time_steps=2", "--config.num_epochs=3", "--config.steps_per_epoch=10",
    "--config.batch_size=16", "--config.eval_batch_size=64", "--config.log_every_steps=1",
    "--config.checkpoint.every_steps=5", "--config.checkpoint.keep=2",
)
"""30 steps of 16 digits (global batch), a checkpoint every 5 steps and after every epoch; the
360 eval digits in batches of 64 (per process 32: five full batches and a padded sixth)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


class Run:
    """The processes of one launch; ``processes[i]`` is process i."""

    def __init__(self, name: str, logs: Path, processes: list[subprocess.Popen]):
        self.name, self.logs, self.processes = name, logs, processes

    def wait(self, timeout: float = 300) -> list[int]:
        """The exit statuses (raises ``subprocess.TimeoutExpired`` on a hang)."""
        deadline = time.monotonic() + timeout
        return [process.wait(timeout=max(deadline - time.monotonic(), 1)) for process in self.processes]

    def err(self, index: int = 0) -> str:
        return (self.logs / f"{self.name}.{index}.err").read_text()

    def out(self, index: int = 0) -> str:
        return (self.logs / f"{self.name}.{index}.out").read_text()

    def final(self, index: int = 0) -> dict:
        """The ``{"final": ...}`` record a finished process prints last."""
        lines = [line for line in self.out(index).splitlines() if line.startswith('{"final"')]
        assert lines, self.err(index)[-3000:]
        return json.loads(lines[-1])["final"]

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


PROGRAMS = {
    "glif-train": ["-m", "glif_jax.train", *TINY_RUN],
    "glif-eval": ["-c", "from glif_jax.train.cli import eval_main; eval_main()"],
}


def launch(name: str, workdir: Path, logs: Path, *args: str, processes: int = 2,
           devices_per_process: int = DEVICES_PER_PROCESS, program: str = "glif-train") -> Run:
    """Starts ``processes`` processes of ``program`` (glif-train: on :data:`TINY_RUN`, then
    ``args``) on ``workdir``; one process runs without jax.distributed.

    The launches of one ``logs`` directory share a JAX compilation cache (``logs/jax_cache``):
    a program compiled by one launch is loaded by the next, which halves its CPU time."""
    environment = dict(os.environ, JAX_PLATFORMS="cpu",
                       XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}",
                       JAX_COMPILATION_CACHE_DIR=str(logs / "jax_cache"),
                       JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    for variable in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        environment.pop(variable, None)
    command = [sys.executable, *PROGRAMS[program], "--workdir", str(workdir), *args]
    if processes > 1:
        command += ["--coordinator_address", f"localhost:{free_port()}", "--num_processes", str(processes),
                    "--heartbeat_timeout_seconds", str(HEARTBEAT_TIMEOUT_SECONDS)]
    logs.mkdir(parents=True, exist_ok=True)
    started = []
    for index in range(processes):
        extra = ["--process_id", str(index)] if processes > 1 else []
        with open(logs / f"{name}.{index}.out", "w") as out, open(logs / f"{name}.{index}.err", "w") as err:
            started.append(subprocess.Popen(command + extra, cwd=REPO, env=environment, stdout=out, stderr=err))
    return Run(name, logs, started)


def wait_until(condition: Callable[[], bool], run: Run, what: str, timeout: float = 300) -> None:
    """Polls ``condition`` every 10 ms; fails naming ``what`` if the run ends or time runs out first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if any(process.poll() is not None for process in run.processes):
            raise AssertionError(f"{run.name} ended before {what}:\n{run.err(0)[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{run.name}: no {what} after {timeout} s")
        time.sleep(0.01)


def train_steps_logged(workdir: Path) -> int:
    """The last train step in ``metrics.jsonl`` (0 when there is none yet)."""
    try:
        lines = (workdir / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    steps = [json.loads(line)["step"] for line in lines if '"split": "train"' in line and line.endswith("}")]
    return max(steps, default=0)


def checkpoint_steps(workdir: Path) -> list[int]:
    """The steps of the complete checkpoints in ``workdir`` (orbax renames a finished save into place)."""
    directory = workdir / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(int(path.name) for path in directory.iterdir() if path.name.isdigit())


def saved_params(workdir: Path, step: int | None = None) -> dict:
    """The parameters of the newest checkpoint (or of ``step``), as nested dicts of arrays."""
    from glif_jax.checkpoint import Checkpointer

    with Checkpointer(workdir / "checkpoints", read_only=True) as checkpointer:
        state, _ = checkpointer.restore(None, step=step)
    return state["params"]


def without_speeds(results: dict) -> dict:
    """A run's results without its wall-clock speeds."""
    return {key: value for key, value in results.items() if not key.endswith("images_per_second")}

"""Multi-process training with real processes: two ``glif-train`` processes of one run on this
machine (``jax.distributed`` on localhost, Gloo collectives, 2 simulated CPU devices each),
started with --coordinator_address / --num_processes / --process_id.

One module fixture runs them all (the runs are the expensive part; the tests read them):

- ``mesh`` and ``pmap``: uninterrupted two-process runs; ``single``: one process with the same
  four devices (the reference for the parameters);
- ``preempted``: the mesh run again, SIGTERM to both processes after a few steps; relaunched
  with --resume=auto, process 1 is SIGKILLed once a later checkpoint is complete; relaunched
  again, it finishes. Its end must be bit-identical to ``mesh``. The processes are paused
  (SIGSTOP) while the signals are sent, so that they land mid-run however slow this test is.
- ``evaluated``: glif-eval in two processes on the finished ``mesh`` workdir;
- ``locked``: two processes on a workdir whose lock this test process holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket

import numpy as np
import pytest

from tests.comparison import absolute_difference, tree_difference
from tests.multiprocess_runs import (
    TOTAL_STEPS,
    checkpoint_steps,
    launch,
    saved_params,
    train_steps_logged,
    wait_until,
    without_speeds,
)
from tests.comparison import assert_bit_identical

EVAL_EXAMPLES = 360   # the digits eval split
# Largest |difference| of any parameter after 30 steps, two processes vs one process on the same
# 4 devices: measured 1.2e-7 (mesh) and 2.2e-7 (pmap), float32 sums reduced in another order;
# the tolerance leaves a factor of about 10.
PARAMS_TOLERANCE = 2e-6


@contextlib.contextmanager
def paused(processes):
    """SIGSTOP to ``processes`` for the ``with`` block, SIGCONT after it."""
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for process in processes:
            process.send_signal(signal.SIGCONT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiprocess")
    logs = root / "logs"
    started = []

    def start(name, *args, workdir=None, **options):
        run = launch(name, workdir or root / name.split("-")[0], logs, *args, **options)
        started.append(run)
        return run

    try:
        mesh = start("mesh", "--config.parallel=mesh")
        pmap = start("pmap", "--config.parallel=pmap")
        single = start("single", "--config.parallel=mesh", processes=1, devices_per_process=4)
        # the later launches of mesh's program load it from the compilation cache
        wait_until(lambda: train_steps_logged(root / "mesh") >= 1, mesh, "a train step")
        preempted = start("preempted-1", "--config.parallel=mesh", "--resume=auto")
        workdir = root / "preempted"
        wait_until(lambda: train_steps_logged(workdir) >= 1, preempted, "a train step")
        with paused(preempted.processes):   # the signals arrive mid-run however busy this machine is
            for process in preempted.processes:
                process.send_signal(signal.SIGTERM)
        results = {"sigterm": preempted, "sigterm_status": preempted.wait()}
        stopped_at = results["stopped_at"] = [stop_step(preempted.err(i)) for i in (0, 1)]
        assert None not in stopped_at, preempted.err(0)[-3000:]

        killed = start("preempted-2", "--config.parallel=mesh", "--resume=auto")
        wait_until(lambda: any(step > stopped_at[0] for step in checkpoint_steps(workdir)), killed,
                   "a checkpoint after the SIGTERM step")
        results["lock_holder"] = json.loads((workdir / "run.lock").read_text())
        with paused(killed.processes[:1]):
            killed.processes[1].kill()
        results["sigkill"], results["sigkill_status"] = killed, killed.wait(timeout=120)
        results["complete_after_kill"] = checkpoint_steps(workdir)

        resumed = start("preempted-3", "--config.parallel=mesh", "--resume=auto")
        (root / "locked").mkdir()   # held by this (live) test process
        (root / "locked" / "run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
        refused = start("locked", "--config.parallel=mesh")
        for run in (mesh, pmap, single):
            results[run.name + "_status"] = run.wait()
        evaluated = start("evaluated", program="glif-eval", workdir=root / "mesh")
        results.update(mesh=mesh, pmap=pmap, single=single, root=root)
        results.update(resumed=resumed, resumed_status=resumed.wait())
        results.update(evaluated=evaluated, evaluated_status=evaluated.wait())
        results.update(refused=refused, refused_status=refused.wait())
        return results
    finally:
        for run in started:
            run.kill()


def stop_step(err: str) -> int | None:
    """The step of glif-train's "stopped by SIGTERM at step N" (None without one)."""
    marker = "stopped by SIGTERM at step "
    return int(err.split(marker)[1].split(";")[0]) if marker in err else None


def test_two_process_runs_finish_with_the_same_metrics_in_every_process(runs):
    for name in ("mesh", "pmap"):
        assert runs[f"{name}_status"] == [0, 0], runs[name].err(1)[-3000:]
        first, second = (without_speeds(runs[name].final(i)) for i in (0, 1))
        assert first == second
        assert first["step"] == TOTAL_STEPS


def test_evaluation_counts_every_example_once_across_processes(runs):
    """Two processes, 180 eval digits each in per-process batches of 32: the sixth batch is padded."""
    for name in ("mesh", "pmap", "single"):
        assert runs[name].final(0)["eval_count"] == EVAL_EXAMPLES


def test_two_process_parameters_match_one_process_on_the_same_devices(runs):
    assert runs["single_status"] == [0]
    reference = saved_params(runs["root"] / "single", TOTAL_STEPS)
    differences = {name: tree_difference(saved_params(runs["root"] / name, TOTAL_STEPS), reference,
                                         absolute_difference) for name in ("mesh", "pmap")}
    print("largest parameter difference to one process:", differences)
    assert all(difference <= PARAMS_TOLERANCE for difference in differences.values()), differences
    for name in ("mesh", "pmap"):
        assert runs[name].final(0)["eval_top1"] == pytest.approx(runs["single"].final(0)["eval_top1"], abs=1 / 360)


def test_sigterm_to_every_process_stops_them_at_one_step_with_a_checkpoint(runs):
    assert runs["sigterm_status"] == [143, 143], runs["sigterm"].err(0)[-3000:]
    first, second = runs["stopped_at"]
    assert first == second and 0 < first < TOTAL_STEPS


def test_one_process_holds_the_workdir_lock(runs):
    """Process 0 alone holds the lock of a multi-process run (the others never write it)."""
    assert runs["lock_holder"]["pid"] == runs["sigkill"].processes[0].pid


def test_a_locked_workdir_refuses_every_process_of_a_run(runs):
    refused = runs["refused"]
    assert runs["refused_status"] == [1, 1], refused.err(0)[-3000:]
    assert f"is in use by another run: process {os.getpid()} on host {socket.gethostname()}" in refused.err(0)
    assert "is in use by another run (process 0 says why)" in refused.err(1)


def test_a_killed_process_stops_the_others_with_a_clear_error(runs):
    """SIGKILL to process 1: process 0 ends on its own (within the fixture's timeout: no hang),
    with an error that says what happened; the checkpoints on disk are complete ones."""
    killed = runs["sigkill"]
    status = runs["sigkill_status"]
    assert status[1] == -signal.SIGKILL
    assert status[0] != 0
    err = killed.err(0)
    assert ("glif-train: error: process 0 of 2 stops: an operation across the run's processes failed" in err
            or "another task died" in err), err[-3000:]
    assert max(runs["complete_after_kill"]) < TOTAL_STEPS


def test_the_relaunch_resumes_from_the_last_complete_checkpoint_bit_identical(runs):
    resumed = runs["resumed"]
    assert runs["resumed_status"] == [0, 0], resumed.err(0)[-3000:]
    last_complete = max(runs["complete_after_kill"])
    for index in (0, 1):
        assert f"resumed from step {last_complete} " in resumed.err(index)
    assert without_speeds(resumed.final(0)) == without_speeds(runs["mesh"].final(0))
    assert_bit_identical(saved_params(runs["root"] / "preempted", TOTAL_STEPS),
                         saved_params(runs["root"] / "mesh", TOTAL_STEPS))
    assert np.isfinite(resumed.final(0)["eval_loss"])


def test_glif_eval_in_two_processes_counts_every_example_once(runs):
    evaluated = runs["evaluated"]
    assert runs["evaluated_status"] == [0, 0], evaluated.err(0)[-3000:]
    for index in (0, 1):
        assert f"({EVAL_EXAMPLES} examples)" in evaluated.out(index)

"""One run per workdir (glif_jax.workdir_lock): a second glif-train on a running run's workdir is
refused at once, naming the holder; a lock whose process is gone is taken over with a warning."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys

import pytest

from glif_jax.workdir_lock import LOCK_FILE, WorkdirLock, WorkdirLocked
from tests.multiprocess_runs import launch, train_steps_logged, wait_until, without_speeds


def dead_pid() -> int:
    """The id of a process of this host that has ended (reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_lock(workdir, **record) -> None:
    (workdir / LOCK_FILE).write_text(json.dumps({"since": "2026-01-01T00:00:00+00:00", "token": "x", **record}))


def test_a_lock_is_exclusive_names_its_holder_and_is_released(tmp_path):
    with WorkdirLock(tmp_path) as first:
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
        assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
        with pytest.raises(WorkdirLocked, match=rf"in use by another run: process {os.getpid()} on host "
                                                rf"{socket.gethostname()}"):
            WorkdirLock(tmp_path).acquire()
        assert first.held
    assert not (tmp_path / LOCK_FILE).exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == []   # no draft left behind
    WorkdirLock(tmp_path).acquire().release()   # free again


def test_a_stale_lock_of_this_host_is_taken_over_with_a_warning(tmp_path, caplog):
    pid = dead_pid()
    write_lock(tmp_path, host=socket.gethostname(), pid=pid, pid_start=None)
    with caplog.at_level(logging.WARNING, logger="glif_jax.workdir_lock"), WorkdirLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"taking over the stale lock of {tmp_path}: process {pid} on host" in caplog.text


def test_a_reused_process_id_is_stale_too(tmp_path):
    """The lock's process id now belongs to a process that started at another time."""
    write_lock(tmp_path, host=socket.gethostname(), pid=os.getpid(), pid_start="1")
    with WorkdirLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["token"] != "x"


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
    write_lock(tmp_path, host="node-elsewhere", pid=dead_pid(), pid_start=None)
    with pytest.raises(WorkdirLocked, match=r"process \d+ on host node-elsewhere .*delete the lock file"):
        WorkdirLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["host"] == "node-elsewhere"


def test_release_leaves_a_lock_that_another_run_took_over(tmp_path):
    lock = WorkdirLock(tmp_path).acquire()
    write_lock(tmp_path, host="node-elsewhere", pid=1, pid_start=None)
    lock.release()
    assert (tmp_path / LOCK_FILE).exists()


@pytest.fixture(scope="module")
def contested(tmp_path_factory):
    """A one-process glif-train run that a second glif-train on its workdir tries to join (while the
    first is paused mid-run), and the same run alone."""
    root = tmp_path_factory.mktemp("contested")
    logs = root / "logs"
    alone = launch("alone", root / "alone", logs, "--config.parallel=none", processes=1, devices_per_process=1)
    assert alone.wait() == [0], alone.err()[-3000:]
    first = launch("first", root / "first", logs, "--config.parallel=none", processes=1, devices_per_process=1)
    try:
        wait_until(lambda: train_steps_logged(root / "first") >= 1, first, "a train step")
        first.processes[0].send_signal(signal.SIGSTOP)   # held mid-run until the second one has ended
        second = launch("second", root / "first", logs, "--config.parallel=none", "--resume=auto",
                        processes=1, devices_per_process=1)
        second_status = second.wait()
        first_running_after_second = first.processes[0].poll() is None
        first.processes[0].send_signal(signal.SIGCONT)
        return dict(alone=alone, first=first, first_status=first.wait(), second=second,
                    second_status=second_status, first_running_after_second=first_running_after_second)
    finally:
        first.kill()


def test_a_second_run_on_a_running_workdir_is_refused_naming_the_holder(contested):
    assert contested["second_status"] == [1]
    assert contested["first_running_after_second"]   # refused while the first one was still training
    err = contested["second"].err()
    holder = f"process {contested['first'].processes[0].pid} on host {socket.gethostname()}"
    assert "glif-train: error: " in err and f"is in use by another run: {holder}" in err, err[-3000:]
    assert "Traceback" not in err


def test_the_first_run_ends_as_if_alone(contested):
    assert contested["first_status"] == [0], contested["first"].err()[-3000:]
    assert without_speeds(contested["first"].final()) == without_speeds(contested["alone"].final())

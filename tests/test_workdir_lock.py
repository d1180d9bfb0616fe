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

from glif_jax.workdir import append_text, workdir_path
from glif_jax.workdir_lock import LOCK_FILE, WorkdirLock, WorkdirLocked
from tests.multiprocess_runs import (
    launch,
    train_steps_logged,
    wait_until,
    without_speeds,
)


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


class ObjectStorePath:
    """A local path that calls itself gs://...: the object-store code paths (no atomic create, no
    append), run on local files."""

    def __init__(self, path):
        self._path = path

    def __str__(self) -> str:
        return f"gs://bucket{self._path}"

    def __truediv__(self, name: str) -> "ObjectStorePath":
        return ObjectStorePath(self._path / name)

    def __getattr__(self, name: str):
        return getattr(self._path, name)


def test_on_an_object_store_the_lock_is_written_when_absent_and_read_back(tmp_path):
    def lock():
        made = WorkdirLock(tmp_path)
        made.path = ObjectStorePath(made.path)
        return made

    with lock():
        with pytest.raises(WorkdirLocked, match=rf"in use by another run: process {os.getpid()} on host"):
            lock().acquire()
    assert not (tmp_path / LOCK_FILE).exists()


def test_appending_to_an_object_store_file_rewrites_it_whole(tmp_path):
    path = ObjectStorePath(workdir_path(tmp_path) / "metrics.jsonl")
    append_text(path, "one\n")
    append_text(path, "two\n")
    assert (tmp_path / "metrics.jsonl").read_text() == "one\ntwo\n"


@pytest.fixture(scope="module")
def contested(tmp_path_factory):
    """A one-process glif-train run that a second glif-train on its workdir tries to join (while the
    first is paused mid-run), and the same run alone."""
    root = tmp_path_factory.mktemp("contested")
    logs = root / "logs"
    alone = launch("alone", root / "alone", logs, "--config.parallel=none", processes=1, devices_per_process=1)
    first = launch("first", root / "first", logs, "--config.parallel=none", processes=1, devices_per_process=1)
    try:
        wait_until(lambda: train_steps_logged(root / "first") >= 1, first, "a train step")
        first.processes[0].send_signal(signal.SIGSTOP)   # held mid-run until the second one has ended
        second = launch("second", root / "first", logs, "--config.parallel=none", "--resume=auto",
                        processes=1, devices_per_process=1)
        second_status = second.wait()
        first_running_after_second = first.processes[0].poll() is None
        first.processes[0].send_signal(signal.SIGCONT)
        assert alone.wait() == [0], alone.err()[-3000:]
        return dict(alone=alone, first=first, first_status=first.wait(), second=second,
                    second_status=second_status, first_running_after_second=first_running_after_second)
    finally:
        first.kill()
        alone.kill()


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

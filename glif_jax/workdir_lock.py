"""One run per work directory: ``<workdir>/run.lock`` names the process that runs in it.

A training run takes the lock before it touches its workdir and gives it back when it ends,
however it ends (finished, stopped by a signal, failed). A second run on the same workdir (a
requeued job racing its predecessor, a typo in a sweep) is refused at once with
:class:`WorkdirLocked`, naming the holder's host and process id, instead of restoring while
the other deletes old checkpoints or both writing. A multi-process run has one holder, its
process 0 (:func:`hold`).

The lock file is JSON: ``{"host", "pid", "pid_start", "since", "token"}``. A lock whose holder
no longer exists — same host, and no process with that id, or one that started at another
time (the id was reused) — is stale: it is taken over with a warning. A lock held from
another host is never taken over: if that run is gone, delete the file.

On a local file system the lock is created atomically (a hard link of a complete file, which
fails when the lock exists); on an object store (``gs://``...) it is written when absent and
read back, which leaves a window of a few milliseconds for two runs that start together.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any, Iterator

from glif_jax.workdir import WorkdirError, workdir_path

LOCK_FILE = "run.lock"

logger = logging.getLogger(__name__)


class WorkdirLocked(WorkdirError):
    """Another run holds the work directory."""


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux ``/proc``); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]   # field 22, counted after the command name


def _alive(pid: int, pid_start: str | None) -> bool:
    """Whether process ``pid`` of this host exists and is the one that started at ``pid_start``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass   # exists, owned by another user
    current = _process_start(pid)
    return pid_start is None or current is None or current == pid_start


def describe(holder: dict[str, Any]) -> str:
    """``process 123 on host node7 (since 2026-01-01T10:00:00+00:00)``."""
    return f"process {holder.get('pid')} on host {holder.get('host')} (since {holder.get('since', '?')})"


class WorkdirLock:
    """The lock of one workdir; :meth:`acquire` takes it or raises, :meth:`release` gives it back."""

    def __init__(self, workdir: str | os.PathLike):
        self.path = workdir_path(workdir) / LOCK_FILE
        self.held = False
        pid = os.getpid()
        self.record = {
            "host": socket.gethostname(), "pid": pid, "pid_start": _process_start(pid),
            "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "token": uuid.uuid4().hex,
        }

    def holder(self) -> dict[str, Any] | None:
        """The lock file's record; None when there is none; ``{}`` when it cannot be read."""
        try:
            record = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def acquire(self) -> "WorkdirLock":
        """Takes the lock (a stale one with a warning); raises :class:`WorkdirLocked` naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):   # a stale lock removed, or a holder that released it meanwhile: try again
            if self._create():
                self.held = True
                return self
            holder = self.holder()
            if holder is None:
                continue
            if not self._stale(holder):
                raise WorkdirLocked(
                    f"{self.path.parent} is in use by another run: {describe(holder)} holds {self.path}. "
                    "Wait for it to end or stop it; if it is gone (e.g. its machine failed), delete the lock "
                    "file and start again"
                )
            logger.warning("taking over the stale lock of %s: %s no longer runs", self.path.parent, describe(holder))
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        raise WorkdirLocked(f"could not take the lock {self.path}: it keeps changing hands")

    def _stale(self, holder: dict[str, Any]) -> bool:
        if holder.get("host") != self.record["host"] or not isinstance(holder.get("pid"), int):
            return False   # another host's process cannot be checked from here (an unreadable lock neither)
        return not _alive(holder["pid"], holder.get("pid_start"))

    def _create(self) -> bool:
        """Writes the lock file unless it exists; True when this lock wrote it."""
        text = json.dumps(self.record, sort_keys=True) + "\n"
        if "://" in str(self.path):   # an object store: no atomic create-if-absent through epath
            if self.path.exists():
                return False
            self.path.write_text(text)
            return (self.holder() or {}).get("token") == self.record["token"]
        draft = self.path.with_name(f"{LOCK_FILE}.{self.record['token']}")
        draft.write_text(text)
        try:
            os.link(draft, self.path)   # atomic; fails when the lock exists
            return True
        except FileExistsError:
            return False
        finally:
            draft.unlink()

    def release(self) -> None:
        """Deletes the lock file if this lock holds it (and it still names this lock)."""
        if not self.held:
            return
        self.held = False
        if (self.holder() or {}).get("token") == self.record["token"]:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


@contextlib.contextmanager
def hold(workdir: str | os.PathLike) -> Iterator[WorkdirLock | None]:
    """Holds ``workdir``'s lock for the ``with`` block: process 0 takes it, and with several
    processes every one of them raises :class:`WorkdirLocked` when process 0 could not."""
    import jax

    lock, refusal = None, None
    if jax.process_index() == 0:
        lock = WorkdirLock(workdir)
        try:
            lock.acquire()
        except WorkdirLocked as error:
            refusal = error
    if jax.process_count() > 1:
        import numpy as np
        from jax.experimental import multihost_utils

        refused = bool(multihost_utils.broadcast_one_to_all(np.int32(refusal is not None)))
        if refused and refusal is None:
            raise WorkdirLocked(f"{workdir_path(workdir)} is in use by another run (process 0 says why)")
    if refusal is not None:
        raise refusal
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()

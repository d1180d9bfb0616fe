"""Where metrics go: TensorBoard event files and a JSON-lines file in the work directory.

``workdir/metrics.jsonl`` holds one JSON object per write: ``{"step", "split", "time",
<name>: value, ...}``; split is "train" or "eval". It reads back with
``pandas.read_json(path, lines=True)``. TensorBoard scalars are tagged ``<split>/<name>``
under ``workdir/tensorboard`` (written with the ``tensorboard`` package alone, no
TensorFlow import). Only process 0 writes; other processes get a writer that does
nothing.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from typing import Mapping

import jax
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from glif_jax.workdir import append_text, workdir_path

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricWriter:
    """Writes scalar metrics to ``metrics.jsonl`` and TensorBoard; use as a context manager."""

    def __init__(self, workdir: str | os.PathLike, *, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.path = workdir_path(workdir) / METRICS_FILE
        self._events = None
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                self.path.write_text("")   # a run has its metrics file from the start
            self._events = _open_event_file(workdir_path(workdir) / TENSORBOARD_DIR)

    def truncate_after(self, step: int) -> None:
        """Drops ``metrics.jsonl`` records past ``step`` (a resumed run redoes those steps)."""
        if not self.enabled or not self.path.exists():
            return
        lines = self.path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if _record_step(line) <= step]
        if kept != lines:
            self.path.write_text("".join(kept))

    def write(self, step: int, split: str, scalars: Mapping[str, float]) -> None:
        """Writes one record of finite-or-not float scalars for ``split`` at ``step``."""
        if not self.enabled:
            return
        now = time.time()
        values = {name: float(value) for name, value in scalars.items()}
        record = {"step": int(step), "split": split, "time": round(now, 3)}
        record.update({name: (value if math.isfinite(value) else str(value)) for name, value in values.items()})
        append_text(self.path, json.dumps(record) + "\n")
        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(tag=f"{split}/{name}", simple_value=value)
                for name, value in values.items()
            ]
        )
        self._events.write(event_pb2.Event(wall_time=now, step=int(step), summary=summary).SerializeToString())
        self._events.flush()

    def close(self) -> None:
        if self.enabled:
            self._events.close()
            self.enabled = False

    def __enter__(self) -> "MetricWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _open_event_file(directory: os.PathLike) -> RecordWriter:
    """A new TensorBoard event file (TFRecord framing, ``tensorboard``'s pure-Python writer,
    which, unlike its ``EventFileWriter``, does not import TensorFlow)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = time.time()
    path = directory / f"events.out.tfevents.{now:.6f}.{socket.gethostname()}"
    events = RecordWriter(path.open("wb"))
    events.write(event_pb2.Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
    events.flush()
    return events


def _record_step(line: str) -> float:
    """The step of one JSONL record; a torn or empty line (a killed writer) is infinitely late."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf

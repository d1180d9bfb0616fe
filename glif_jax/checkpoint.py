"""Checkpoints of a training run with orbax: the last N periodic ones plus the best one.

A ``glif-train`` work directory keeps them in its ``checkpoints/`` subdirectory
(:data:`CHECKPOINTS_DIR`). Layout under a checkpoint ``directory``::

    latest/<step>/{state,meta}   the ``keep`` most recent periodic checkpoints
    best/<step>/{state,meta}     the one with the highest ``meta[best_metric]``

``state`` is any pytree of arrays (the train state: params, batch statistics, optimizer
state, step, RNG key), saved as host NumPy arrays so that a checkpoint written by one
data-parallel strategy restores under any other. ``meta`` is a small JSON dict (epoch,
evaluation metrics, ...). Saving is asynchronous when orbax offers it: ``save`` returns
once the arrays are copied to the host, and the files are written in the background;
``wait`` / ``close`` block until they are on disk.

Restoring into a *target* (a pytree with the structure of the saved state, e.g. a freshly
initialised state) gives that structure back; without a target, the saved tree comes back as
nested dicts (lists for tuples, None for empty nodes), e.g. to read the parameters without
rebuilding an optimizer. Either way the leaves are NumPy arrays bit-identical to the saved ones.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

PyTree = Any

CHECKPOINTS_DIR = "checkpoints"   # in a glif-train work directory, next to CONFIG_FILE
LATEST = "latest"
BEST = "best"
STATE_ITEM, META_ITEM = "state", "meta"   # the two items of one checkpoint: <step>/state, <step>/meta
CONFIG_FILE = "config.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not fit the requested state."""


def to_host(tree: PyTree) -> PyTree:
    """Every leaf as a NumPy ``ndarray`` (0-d arrays for scalars), on the host."""
    return jax.tree.map(np.asarray, jax.device_get(tree))


class Checkpointer:
    """Keep-N periodic checkpoints plus best tracking, in one directory.

    Args:
      directory: where the checkpoints live (created when missing unless ``read_only``).
      keep: how many periodic checkpoints to keep (oldest deleted first).
      async_save: write in a background thread (orbax async checkpointing).
      best_metric: the ``meta`` key whose largest value marks the best checkpoint.
      read_only: open an existing directory for restoring only.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        keep: int = 3,
        async_save: bool = True,
        best_metric: str = "eval_top1",
        read_only: bool = False,
    ):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory).absolute()
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"no checkpoint directory at {self.directory}")
        self.best_metric = best_metric
        self._latest = self._manager(LATEST, keep, async_save, read_only)
        self._best = self._manager(BEST, 1, async_save, read_only)
        self.best_value = self._stored_best_value()

    def _manager(self, name: str, keep: int, async_save: bool, read_only: bool):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else keep,  # what orbax sets (with a warning) when read-only
            save_interval_steps=0 if read_only else 1,
            enable_async_checkpointing=async_save and not read_only,
            create=not read_only,
            read_only=read_only,
        )
        with _without_read_only_notice():
            return ocp.CheckpointManager(self.directory / name, options=options, item_names=(STATE_ITEM, META_ITEM))

    # ---- queries -------------------------------------------------------------------
    def latest_step(self) -> int | None:
        """The step of the newest periodic checkpoint, or None when there is none."""
        return self._latest.latest_step()

    def best_step(self) -> int | None:
        """The step of the best checkpoint, or None when there is none."""
        return self._best.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of the periodic checkpoints still on disk, oldest first."""
        return sorted(self._latest.all_steps())

    def _stored_best_value(self) -> float:
        step = self.best_step()
        if step is None:
            return -math.inf
        meta = self._restore_meta(self._best, step)
        return float(meta.get(self.best_metric, -math.inf))

    # ---- saving --------------------------------------------------------------------
    def save(self, step: int, state: PyTree, meta: Mapping[str, Any]) -> bool:
        """Saves a periodic checkpoint, and the best one when ``meta[best_metric]`` improved.

        Returns whether this checkpoint became the best.
        """
        state = to_host(state)
        meta = _json_ready(meta)
        self._save(self._latest, step, state, meta)
        value = meta.get(self.best_metric)
        if value is None or not value > self.best_value:
            return False
        self.best_value = float(value)
        self._save(self._best, step, state, meta)
        return True

    @staticmethod
    def _save(manager, step: int, state: PyTree, meta: dict) -> None:
        if step in manager.all_steps():  # e.g. a resumed run saving its restored step again
            return
        manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )

    # ---- restoring -----------------------------------------------------------------
    def restore(self, target: PyTree | None = None, *, which: str = LATEST,
                step: int | None = None) -> tuple[PyTree, dict]:
        """Restores ``(state, meta)``; ``which`` is "latest" or "best", ``step`` None = newest.

        With a ``target``, ``state`` has the target's structure (e.g. a ``TrainState``); with
        ``target=None``, it is the saved tree as nested dicts of NumPy arrays (tuples as lists,
        empty nodes as None), e.g. ``state["params"]`` of a train state.
        Raises ``CheckpointError`` with the path when the checkpoint is missing, unreadable
        or has a structure different from ``target``.
        """
        if which not in (LATEST, BEST):
            raise ValueError(f"which must be {LATEST!r} or {BEST!r}, got {which!r}")
        self.wait()
        manager = self._latest if which == LATEST else self._best
        steps = sorted(manager.all_steps())
        if step is None:
            if not steps:
                raise CheckpointError(f"no {which} checkpoint in {self.directory / which}")
            step = steps[-1]
        elif step not in steps:
            raise CheckpointError(
                f"no {which} checkpoint for step {step} in {self.directory / which}; "
                f"available steps: {steps}"
            )
        path = self.directory / which / str(step)
        target = None if target is None else to_host(target)
        try:
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
                ),
            )
        except Exception as error:  # orbax raises many types; name the path and the cause
            raise CheckpointError(
                f"cannot restore the checkpoint at {path}: it is corrupt, incomplete or was "
                f"written for a different model/optimizer ({type(error).__name__}: {error})"
            ) from error
        if target is None:
            return to_host(restored.state), dict(restored.meta or {})
        _check_same_structure(target, restored.state, path)
        return restored.state, dict(restored.meta or {})

    def _restore_meta(self, manager, step: int) -> dict:
        try:
            restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except Exception as error:
            raise CheckpointError(
                f"cannot read the metadata of the checkpoint at {manager.directory / str(step)} "
                f"({type(error).__name__}: {error})"
            ) from error
        return dict(restored.meta or {})

    # ---- lifetime ------------------------------------------------------------------
    def wait(self) -> None:
        """Blocks until every pending asynchronous save is on disk."""
        self._latest.wait_until_finished()
        self._best.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases orbax's resources."""
        self.wait()
        self._latest.close()
        self._best.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@contextlib.contextmanager
def _without_read_only_notice():
    """Drops orbax's "Given directory is read only" warning, logged for every read-only manager
    (two per read-only Checkpointer: noise in glif-eval / glif-plot output, not a problem)."""
    def not_the_notice(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Given directory is read only")

    absl_logger = logging.getLogger("absl")
    absl_logger.addFilter(not_the_notice)
    try:
        yield
    finally:
        absl_logger.removeFilter(not_the_notice)


def _check_same_structure(target: PyTree, restored: PyTree, path: Path) -> None:
    """Orbax restores into the target's structure; also insist on equal shapes and dtypes."""
    target_leaves, target_def = jax.tree_util.tree_flatten_with_path(target)
    restored_leaves, restored_def = jax.tree_util.tree_flatten_with_path(restored)
    if target_def != restored_def:
        raise CheckpointError(f"checkpoint at {path} has a different state structure than expected")
    for (key, want), (_, got) in zip(target_leaves, restored_leaves):
        if np.shape(want) != np.shape(got) or np.asarray(want).dtype != np.asarray(got).dtype:
            raise CheckpointError(
                f"checkpoint at {path}: {jax.tree_util.keystr(key)} has shape/dtype "
                f"{np.shape(got)}/{np.asarray(got).dtype}, expected "
                f"{np.shape(want)}/{np.asarray(want).dtype}"
            )


def _json_ready(meta: Mapping[str, Any]) -> dict:
    """``meta`` with NumPy/JAX scalars turned into Python numbers."""
    return json.loads(json.dumps(dict(meta), default=lambda value: np.asarray(value).tolist()))


def save_config(directory: str | Path, config: Any) -> Path:
    """Writes ``config`` (an ``ml_collections.ConfigDict``) as ``directory/config.json``."""
    path = Path(directory) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_json(indent=2, sort_keys=True) + "\n")
    return path


def load_config(directory: str | Path):
    """Reads ``directory/config.json`` back into a locked ``ml_collections.ConfigDict``."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG_FILE} in {Path(directory).absolute()} (not a training workdir?)")
    try:
        config = ml_collections.ConfigDict(json.loads(path.read_text()))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error
    config.lock()
    return config

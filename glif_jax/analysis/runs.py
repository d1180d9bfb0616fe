"""Reading a training run for analysis: its config, its checkpoints, the model they fit.

A run is the work directory of ``glif-train`` (see :mod:`glif_jax.checkpoint`)::

    <workdir>/config.json
    <workdir>/checkpoints/latest/<step>/{state,meta}
    <workdir>/checkpoints/best/<step>/{state,meta}

:func:`open_run` accepts the work directory, its ``checkpoints`` directory, or one
``latest/<step>`` / ``best/<step>`` directory. Checkpoints are restored without a target
(the saved structure as nested dicts of NumPy arrays), so no optimizer or train state
has to be rebuilt to read the parameters.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from glif_jax.checkpoint import (BEST, CHECKPOINTS_DIR, CONFIG_FILE, LATEST, STATE_ITEM, Checkpointer,
                                 CheckpointError, load_config)

KINDS = (LATEST, BEST)

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CheckpointRef:
    """One checkpoint on disk: its kind ("latest" | "best"), step and directory."""

    kind: str
    step: int
    path: Path


@dataclasses.dataclass(frozen=True)
class LoadedCheckpoint:
    """What analysis needs of a checkpoint: params and batch_stats trees (NumPy), its meta dict."""

    ref: CheckpointRef
    params: dict
    batch_stats: dict
    meta: dict

    @property
    def epoch(self) -> float | None:
        epoch = self.meta.get("epoch")
        return None if epoch is None else float(epoch)

    @property
    def variables(self) -> dict:
        """The model variables (``params`` and, if any, ``batch_stats``)."""
        variables = {"params": self.params}
        if self.batch_stats:
            variables["batch_stats"] = self.batch_stats
        return variables


@dataclasses.dataclass(frozen=True)
class Run:
    """A training run opened for analysis.

    workdir: the work directory (holds ``config.json``), or None when it was not found.
    config: the run's ``ml_collections.ConfigDict``, or None without ``config.json``.
    checkpoints: every checkpoint found, by step (a step saved as both latest and best once, as latest).
    selected: the checkpoint to describe (the one named on the command line, or the newest of ``which``).
    """

    workdir: Path | None
    config: Any
    checkpoints: tuple[CheckpointRef, ...]
    selected: CheckpointRef


def _steps_in(directory: Path) -> list[int]:
    """Integer-named subdirectories with a saved state (orbax's temporary directories are skipped)."""
    if not directory.is_dir():
        return []
    return sorted(int(child.name) for child in directory.iterdir()
                  if child.name.isdigit() and (child / STATE_ITEM).is_dir())


def _checkpoint_root(path: Path) -> Path | None:
    for candidate in (path / CHECKPOINTS_DIR, path):
        if any((candidate / kind).is_dir() for kind in KINDS):
            return candidate
    return None


def open_run(path: str | Path, *, which: str = LATEST, step: int | None = None) -> Run:
    """Finds the config and checkpoints of the run that ``path`` points into.

    Args:
      path: a work directory, its ``checkpoints`` directory, or a ``latest/<step>`` or
        ``best/<step>`` checkpoint directory (which then is the selected one).
      which, step: the checkpoint to select when ``path`` is not a checkpoint directory:
        the newest of kind ``which`` ("latest" or "best"), or the one at ``step``.
    Raises:
      CheckpointError: nothing usable at ``path``.
    """
    if which not in KINDS:
        raise ValueError(f"which: expected one of {KINDS}, got {which!r}")
    path = Path(path).absolute()
    if not path.exists():
        raise CheckpointError(f"{path} does not exist (expected a glif-train work directory or a checkpoint)")
    named = None
    if path.name.isdigit() and path.parent.name in KINDS and (path / STATE_ITEM).is_dir():
        named = CheckpointRef(path.parent.name, int(path.name), path)
        root = path.parent.parent
    else:
        root = _checkpoint_root(path)
        if root is None:
            raise CheckpointError(f"no checkpoints under {path} (expected {CHECKPOINTS_DIR}/latest/<step> or "
                                  f"{CHECKPOINTS_DIR}/best/<step>, as glif-train writes them)")
    found = {kind: _steps_in(root / kind) for kind in KINDS}
    by_step: dict[int, CheckpointRef] = {}
    for kind in reversed(KINDS):  # latest wins over best for the same step
        for saved_step in found[kind]:
            by_step[saved_step] = CheckpointRef(kind, saved_step, root / kind / str(saved_step))
    if not by_step:
        raise CheckpointError(f"no saved checkpoint in {root}")
    selected = named or _select(root, found, which, step)
    workdir = next((folder for folder in (root.parent, root) if (folder / CONFIG_FILE).is_file()), None)
    config = load_config(workdir) if workdir is not None else None
    if config is None:
        logger.warning("no %s next to %s: layers stay in parameter-tree order and the initial values and "
                       "firing rates cannot be shown", CONFIG_FILE, root)
    return Run(workdir, config, tuple(by_step[key] for key in sorted(by_step)), selected)


def _select(root: Path, found: dict[str, list[int]], which: str, step: int | None) -> CheckpointRef:
    steps = found[which]
    if step is None:
        if not steps:
            other = BEST if which == LATEST else LATEST
            raise CheckpointError(f"no {which} checkpoint in {root} (there are {other} ones: {found[other]})")
        step = steps[-1]
    elif step not in steps:
        raise CheckpointError(f"no {which} checkpoint for step {step} in {root}; available steps: {steps}")
    return CheckpointRef(which, step, root / which / str(step))


def load_checkpoint(ref: CheckpointRef) -> LoadedCheckpoint:
    """Restores one checkpoint's params, batch statistics and meta (as saved, on the host)."""
    with Checkpointer(ref.path.parent.parent, read_only=True, async_save=False) as checkpointer:
        state, meta = checkpointer.restore(which=ref.kind, step=ref.step)
    if not isinstance(state, dict) or "params" not in state:
        raise CheckpointError(f"the checkpoint at {ref.path} holds no 'params' (not a glif-train state?)")
    return LoadedCheckpoint(ref, state["params"], state.get("batch_stats") or {}, meta)

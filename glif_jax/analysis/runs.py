"""Reading a training run for analysis: its config, its checkpoints, the model they fit.

A run is the work directory of ``glif-train`` (see :mod:`glif_jax.checkpoint`)::

    <workdir>/config.json
    <workdir>/checkpoints/<step>/{state,meta,checksums}

:func:`open_run` accepts the work directory, its ``checkpoints`` directory, or one
``checkpoints/<step>`` directory. Checkpoints are restored (and checked against their
checksums) without a target
(the saved structure as nested dicts of NumPy arrays), so no optimizer or train state
has to be rebuilt to read the parameters.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from glif_jax.checkpoint import BEST, KINDS, LATEST, STATE_ITEM, Checkpointer, CheckpointError
from glif_jax.workdir import CHECKPOINTS_DIR, CONFIG_FILE, load_config

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CheckpointRef:
    """One checkpoint on disk: its kind ("best" for the run's best, else "latest"), step and directory."""

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


def _is_step_dir(path: Path) -> bool:
    """An integer-named directory with a saved state (orbax's temporary directories are not)."""
    return path.name.isdigit() and (path / STATE_ITEM).is_dir()


def _checkpoint_root(path: Path) -> Path | None:
    for candidate in (path / CHECKPOINTS_DIR, path):
        if candidate.is_dir() and any(_is_step_dir(child) for child in candidate.iterdir()):
            return candidate
    return None


def open_run(path: str | Path, *, which: str = LATEST, step: int | None = None) -> Run:
    """Finds the config and checkpoints of the run that ``path`` points into.

    Args:
      path: a work directory, its ``checkpoints`` directory, or one ``checkpoints/<step>``
        directory (which then is the selected one).
      which, step: the checkpoint to select when ``path`` is not a checkpoint directory:
        the newest ("latest") or the best ("best") one, or the one at ``step``.
    Raises:
      CheckpointError: nothing usable at ``path``.
    """
    if which not in KINDS:
        raise ValueError(f"which: expected one of {KINDS}, got {which!r}")
    path = Path(path).absolute()
    if not path.exists():
        raise CheckpointError(f"{path} does not exist (expected a glif-train work directory or a checkpoint)")
    named_step = None
    if _is_step_dir(path):
        named_step, root = int(path.name), path.parent
    else:
        root = _checkpoint_root(path)
        if root is None:
            raise CheckpointError(f"no checkpoints under {path} (expected {CHECKPOINTS_DIR}/<step>, "
                                  "as glif-train writes them)")
    with Checkpointer(root, read_only=True, async_save=False) as checkpointer:
        steps, best = checkpointer.all_steps(), checkpointer.best_step()
    if not steps:
        raise CheckpointError(f"no saved checkpoint in {root}")

    def ref(saved_step: int) -> CheckpointRef:
        return CheckpointRef(BEST if saved_step == best else LATEST, saved_step, root / str(saved_step))

    if named_step is not None:
        selected = ref(named_step)
    elif step is not None:
        if step not in steps:
            raise CheckpointError(f"no checkpoint for step {step} in {root}; available steps: {steps}")
        selected = ref(step)
    elif which == BEST:
        if best is None:
            raise CheckpointError(f"no best checkpoint in {root}: none has an evaluation metric "
                                  f"(there are checkpoints at steps {steps})")
        selected = ref(best)
    else:
        selected = ref(steps[-1])
    workdir = next((folder for folder in (root.parent, root) if (folder / CONFIG_FILE).is_file()), None)
    config = load_config(workdir) if workdir is not None else None
    if config is None:
        logger.warning("no %s next to %s: layers stay in parameter-tree order and the initial values and "
                       "firing rates cannot be shown", CONFIG_FILE, root)
    return Run(workdir, config, tuple(ref(saved_step) for saved_step in steps), selected)


def load_checkpoint(ref: CheckpointRef) -> LoadedCheckpoint:
    """Restores one checkpoint's params, batch statistics and meta (as saved, on the host)."""
    with Checkpointer(ref.path.parent, read_only=True, async_save=False) as checkpointer:
        state, meta = checkpointer.restore(step=ref.step)
    if not isinstance(state, dict) or "params" not in state:
        raise CheckpointError(f"the checkpoint at {ref.path} holds no 'params' (not a glif-train state?)")
    return LoadedCheckpoint(ref, state["params"], state.get("batch_stats") or {}, meta)

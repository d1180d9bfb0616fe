"""Checkpoints of a training run with orbax: the newest N plus the best, verified on restore.

A ``glif-train`` work directory keeps them in its ``checkpoints/`` subdirectory (see
:mod:`glif_jax.workdir`), one orbax ``CheckpointManager`` for all of them::

    <step>/state       the train state: any pytree of arrays (params, batch statistics,
                       optimizer state, step, RNG key), saved as host NumPy arrays so that
                       a checkpoint written by one data-parallel strategy restores under any other
    <step>/meta        a small JSON dict (epoch, evaluation metrics, ...)
    <step>/checksums   CRC-32, dtype and shape of every array of ``state``, taken at save time

After every save, the checkpoints that are neither among the ``keep`` newest nor the best
(largest ``meta[best_metric]``) are deleted, and only once a newer checkpoint is complete.
Saving is asynchronous when orbax offers it: ``save`` returns once the arrays are copied
to the host and the files are written in the background; ``wait`` / ``close`` block until
they are on disk. A process killed mid-save leaves only a temporary directory, removed
when the directory is next opened for writing.

Every restore checks the arrays against their checksums. A checkpoint that cannot be
read back intact (corrupt or truncated files, damaged ``meta``, a half-deleted step) is
skipped with a warning naming it, and the next newest (for "latest") or next best (for
"best") intact one is used; asking for a specific ``step`` raises ``CheckpointError``
instead.

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
import zlib
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from glif_jax.errors import check_choice
from glif_jax.extras import require
from glif_jax.workdir import workdir_path

ocp = require("orbax.checkpoint", "train", "glif_jax.checkpoint")

PyTree = Any

logger = logging.getLogger(__name__)

LATEST = "latest"
BEST = "best"
KINDS = (LATEST, BEST)
STATE_ITEM, META_ITEM, CHECKSUMS_ITEM = "state", "meta", "checksums"   # the items of <step>/


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, damaged or does not fit the requested state."""


def to_host(tree: PyTree) -> PyTree:
    """Every leaf as a NumPy ``ndarray`` (0-d arrays for scalars), on the host."""
    return jax.tree.map(np.asarray, jax.device_get(tree))


def checksums(tree: PyTree) -> dict[str, dict[str, Any]]:
    """``{leaf name: {"crc32", "dtype", "shape"}}`` of a host pytree.

    Leaf names join the path's keys with "/" (attribute, dict key or sequence index alike),
    so a tree and its nested-dict form (as restored without a target) get the same names.
    """
    sums = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = np.ascontiguousarray(leaf)
        sums[jax.tree_util.keystr(path, simple=True, separator="/")] = {
            "crc32": zlib.crc32(array.view(np.uint8).reshape(-1) if array.ndim else array.tobytes()),
            "dtype": array.dtype.str,
            "shape": list(array.shape),
        }
    return sums


def _score(value: Any) -> float:
    """A meta value as a metric to rank by: -inf unless it is a finite number (NaN never ranks)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return -math.inf
    return float(value)


def _checksum_mismatches(expected: Mapping[str, Any], tree: PyTree) -> list[str]:
    """Names of the leaves of ``tree`` whose contents, dtype or shape differ from ``expected``."""
    actual = checksums(tree)
    names = sorted(set(expected) | set(actual))
    return [name for name in names if expected.get(name) != actual.get(name)]


class Checkpointer:
    """The newest ``keep`` checkpoints plus the best one, in one directory.

    Args:
      directory: where the checkpoints live (created when missing unless ``read_only``).
      keep: how many of the newest checkpoints to keep (the best is kept besides them).
      async_save: write in a background thread (orbax async checkpointing).
      best_metric: the ``meta`` key whose largest value marks the best checkpoint;
        checkpoints without it (e.g. mid-epoch ones) are never the best.
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
        self.directory = workdir_path(directory).absolute()
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"no checkpoint directory at {self.directory}")
        _reject_old_layout(self.directory)
        self.keep = keep
        self.best_metric = best_metric
        self.read_only = read_only
        self._metas: dict[int, dict | None] = {}   # step -> meta, None when unreadable
        options = ocp.CheckpointManagerOptions(
            # Deletion is ours (the newest `keep` plus the best, by our `meta`): orbax's BestN
            # policy reads every step's metrics file when the manager opens, and one damaged
            # file makes opening raise, so no checkpoint of the run could be restored.
            max_to_keep=None,
            save_interval_steps=0 if read_only else 1,
            enable_async_checkpointing=async_save and not read_only,
            create=not read_only,
            read_only=read_only,
            cleanup_tmp_directories=not read_only,   # leftovers of a process killed mid-save
        )
        with _without_read_only_notice():
            self._manager = ocp.CheckpointManager(
                self.directory, options=options, item_names=(STATE_ITEM, META_ITEM, CHECKSUMS_ITEM)
            )
        if not read_only:
            # orbax removes a killed save's temporary directories in a background thread that only
            # its next save waits for; wait now, so that a directory opened for writing is clean
            # even when this process ends before saving (orbax 0.12 has no public call for it).
            self._manager._maybe_await_cleanup_tmp_directory()
        best = self.best_step()
        self.best_value = -math.inf if best is None else self._metric(best)

    # ---- queries -------------------------------------------------------------------
    def all_steps(self) -> list[int]:
        """Steps of the checkpoints on disk (complete as far as orbax knows), oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest step on disk, or None when there is none (not checked for damage)."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def best_step(self) -> int | None:
        """The step with the largest ``meta[best_metric]`` (newest on ties), or None."""
        ranked = self._ranked_by_metric()
        return ranked[0] if ranked else None

    def meta(self, step: int) -> dict | None:
        """The ``meta`` dict saved with ``step``; None when it is missing or unreadable."""
        if step not in self._metas:
            try:
                restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
                meta = restored.meta
            except Exception as error:  # noqa: BLE001 - orbax and json raise many types
                logger.warning("checkpoint %s: its meta cannot be read (%s: %s); it is skipped",
                               self.directory / str(step), type(error).__name__, error)
                meta = None
            self._metas[step] = meta if isinstance(meta, dict) else None
        return self._metas[step]

    def _metric(self, step: int) -> float:
        return _score((self.meta(step) or {}).get(self.best_metric))

    def _ranked_by_metric(self) -> list[int]:
        """Steps that have a finite metric, best first (newest first among equals)."""
        scored = [(self._metric(step), step) for step in self.all_steps()]
        return [step for value, step in sorted(scored, reverse=True) if value > -math.inf]

    # ---- saving --------------------------------------------------------------------
    def save(self, step: int, state: PyTree, meta: Mapping[str, Any]) -> bool:
        """Saves a checkpoint; returns whether it became the best (``meta[best_metric]`` improved).

        A step already on disk (e.g. a resumed run reaching its restored step again) is not
        written twice.
        """
        if self.read_only:
            raise CheckpointError(f"{self.directory} was opened read-only")
        if step in self.all_steps():
            return False
        state = to_host(state)
        meta = _json_ready(meta)
        self.wait()   # the previous save is complete: older ones may go
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                meta=ocp.args.JsonSave(meta),
                checksums=ocp.args.JsonSave(checksums(state)),
            ),
            force=True,
        )
        self._metas[step] = meta
        value = _score(meta.get(self.best_metric))
        if not value > self.best_value:
            return False
        self.best_value = value
        return True

    def _delete_unkept(self) -> None:
        """Deletes the checkpoints that are neither among the ``keep`` newest nor the best.

        Called only when no save is in flight, so a checkpoint goes only once ``keep``
        newer ones are complete (while one is written, ``keep + 1`` are on disk)."""
        steps = self.all_steps()
        kept = set(steps[-self.keep:])
        best = self.best_step()
        for step in steps:
            if step not in kept and step != best:
                self._manager.delete(step)
                self._metas.pop(step, None)

    # ---- restoring -----------------------------------------------------------------
    def restore(self, target: PyTree | None = None, *, which: str = LATEST,
                step: int | None = None) -> tuple[PyTree, dict]:
        """Restores ``(state, meta)`` of the newest intact checkpoint of kind ``which``.

        ``which`` is "latest" (newest first) or "best" (largest ``meta[best_metric]`` first);
        a damaged checkpoint is skipped with a warning and the next one tried. ``step``
        restores exactly that checkpoint instead.
        With a ``target``, ``state`` has the target's structure (e.g. a ``TrainState``); with
        ``target=None``, it is the saved tree as nested dicts of NumPy arrays (tuples as lists,
        empty nodes as None), e.g. ``state["params"]`` of a train state.
        Raises ``CheckpointError`` with the path when there is no such checkpoint, or none
        that is intact and has the structure of ``target``.
        """
        check_choice("which", which, KINDS)
        self.wait()
        host_target = None if target is None else to_host(target)
        if step is not None:
            if step not in self.all_steps():
                raise CheckpointError(
                    f"no checkpoint for step {step} in {self.directory}; available steps: {self.all_steps()}"
                )
            return self._restore_intact(step, host_target)
        candidates = self.all_steps()[::-1] if which == LATEST else self._ranked_by_metric()
        if not candidates:
            raise CheckpointError(
                f"no {which} checkpoint in {self.directory}"
                + (f" (no checkpoint has {self.best_metric!r} in its meta)" if which == BEST and self.all_steps() else "")
            )
        failures = []
        for candidate in candidates:
            try:
                return self._restore_intact(candidate, host_target)
            except CheckpointError as error:
                failures.append(str(error))
                logger.warning("skipping a damaged checkpoint: %s", error)
        raise CheckpointError(
            f"no intact {which} checkpoint in {self.directory}:\n  " + "\n  ".join(failures)
        )

    def _restore_intact(self, step: int, host_target: PyTree | None) -> tuple[PyTree, dict]:
        """Restores one checkpoint and checks it against its checksums (and ``host_target``, the
        target on the host)."""
        path = self.directory / str(step)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(host_target),
                    meta=ocp.args.JsonRestore(),
                    checksums=ocp.args.JsonRestore(),
                ),
            )
        except Exception as error:  # noqa: BLE001 - orbax raises many types; name the path and the cause
            difference = self._difference(step, host_target)
            if difference:
                raise CheckpointError(f"checkpoint at {path} was written for another model: {difference}") from error
            raise CheckpointError(
                f"cannot restore the checkpoint at {path}: it is corrupt, incomplete or was "
                f"written for a different model/optimizer ({type(error).__name__}: {error})"
            ) from error
        meta, expected = restored.meta, restored.checksums
        if not isinstance(meta, dict) or not isinstance(expected, dict):
            raise CheckpointError(f"checkpoint at {path}: its {META_ITEM} or {CHECKSUMS_ITEM} is not a JSON object")
        state = to_host(restored.state)
        if host_target is not None:
            _check_same_structure(host_target, state, path)
        damaged = _checksum_mismatches(expected, state)
        if damaged:
            raise CheckpointError(
                f"checkpoint at {path} is corrupt: {len(damaged)} array(s) differ from the checksums "
                f"taken at save time ({', '.join(damaged[:5])}{', ...' if len(damaged) > 5 else ''})"
            )
        self._metas[step] = meta
        return (state if host_target is None else restored.state), dict(meta)

    def _difference(self, step: int, host_target: PyTree | None) -> str | None:
        """What the saved leaves (named by the checksums) and the target's lack of each other, or None."""
        if host_target is None:
            return None
        try:
            saved = self._manager.restore(step, args=ocp.args.Composite(checksums=ocp.args.JsonRestore())).checksums
        except Exception:  # noqa: BLE001 - then the checkpoint is damaged, which the caller reports
            return None
        if not isinstance(saved, dict):
            return None
        return describe_difference(set(saved), set(checksums(host_target)))

    # ---- lifetime ------------------------------------------------------------------
    def wait(self) -> None:
        """Blocks until every pending asynchronous save is on disk (then prunes to ``keep``)."""
        self._manager.wait_until_finished()
        if not self.read_only:
            self._delete_unkept()

    def close(self) -> None:
        """Waits for pending saves and releases orbax's resources."""
        try:
            self.wait()
        finally:
            self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _reject_old_layout(directory: Path) -> None:
    """Refuses ``latest/`` and ``best/`` subdirectories: an earlier glif-jax layout, without checksums."""
    if any((directory / kind).is_dir() for kind in KINDS):
        raise CheckpointError(
            f"{directory} holds checkpoints of an earlier glif-jax (latest/ and best/ subdirectories, "
            "no checksums), which this version cannot verify; read them with the version that wrote "
            "them, or train in a new --workdir"
        )


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


def describe_difference(saved: set[str], expected: set[str]) -> str | None:
    """Names what the saved leaves and the expected ones lack of each other (``/``-joined leaf
    names), and where a neuron layer's parameters differ, which neurons they belong to."""
    extra, missing = sorted(saved - expected), sorted(expected - saved)
    if not extra and not missing:
        return None
    parts = []
    if extra:
        parts.append(f"it holds {len(extra)} array(s) the model lacks ({', '.join(extra[:4])}"
                     f"{', ...' if len(extra) > 4 else ''})")
    if missing:
        parts.append(f"it lacks {len(missing)} array(s) of the model ({', '.join(missing[:4])}"
                     f"{', ...' if len(missing) > 4 else ''})")
    differing = [name for name in extra + missing if name.startswith("params/")] or extra + missing
    scope = differing[0].rpartition("/")[0]
    in_saved = {name.rpartition("/")[2] for name in saved if name.rpartition("/")[0] == scope}
    in_model = {name.rpartition("/")[2] for name in expected if name.rpartition("/")[0] == scope}
    saved_neuron, model_neuron = _neuron_named_by(in_saved), _neuron_named_by(in_model)
    if saved_neuron or model_neuron:
        parts.append(f"{scope} holds the parameters of neuron {saved_neuron or '?'!r} in the checkpoint "
                     f"({', '.join(sorted(in_saved))}) and of neuron {model_neuron or '?'!r} in the model "
                     f"({', '.join(sorted(in_model))}): config.model.neuron must name the checkpoint's neuron")
    return "; ".join(parts)


def _neuron_named_by(names: set[str]) -> str | None:
    """The registered neuron whose parameter names are exactly ``names`` (None if none or several)."""
    from glif_jax.neurons import scopes

    found = scopes.match(dict.fromkeys(names, 0))
    return found.name if found is not None else None


def _json_ready(meta: Mapping[str, Any]) -> dict:
    """``meta`` with NumPy/JAX scalars turned into Python numbers."""
    return json.loads(json.dumps(dict(meta), default=lambda value: np.asarray(value).tolist()))

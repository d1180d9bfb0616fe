"""The authors' trained checkpoints (CAS-CLab/Gated-LIF) in the training system.

- :func:`import_to_workdir` turns one of their ``.pth`` / ``.pth.tar`` files into a glif-jax
  work directory (``config.json`` + a checkpoint at step 0), so that ``glif-eval``,
  ``glif-plot`` and ``glif-train --resume`` treat it like a run of ours;
- :func:`initial_state_from` starts a new run (``glif-train --init-from``) from their
  parameters and tdBN statistics, with a fresh optimizer state.

The config names the experiment (dataset, recipe, model, T); the checkpoint must hold the
same architecture and T. Its width multiplier and channel-wise/layer-wise neurons are read
from the tensors and written into the config. The conversion itself is
:func:`glif_jax.gated_lif.from_gated_lif` (no PyTorch needed).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from glif_jax.checkpoint import Checkpointer
from glif_jax.gated_lif import GatedLIFCheckpoint, GatedLIFFormatError, describe_gated_lif, from_gated_lif
from glif_jax.gated_lif.convert import check_variables_fit
from glif_jax.train.experiment import Experiment
from glif_jax.train.state import TrainState
from glif_jax.workdir import CHECKPOINTS_DIR, save_config, workdir_path

logger = logging.getLogger(__name__)


def config_for(config: Any, path: str | Path) -> tuple[Any, GatedLIFCheckpoint]:
    """``config`` with the model's width and neuron granularity of the checkpoint at ``path``,
    and what the checkpoint holds (read once here, e.g. its class count for :func:`check_classes`).

    Raises ``GatedLIFFormatError`` when the checkpoint holds another architecture or T than
    ``config.model`` names."""
    facts = describe_gated_lif(path, model=config.model.name)
    if facts.time_steps != config.model.time_steps:
        raise GatedLIFFormatError(
            f"{path} holds a network for T={facts.time_steps}, but config.model.time_steps="
            f"{config.model.time_steps}; choose the config of T={facts.time_steps} "
            f"(or --config.model.time_steps={facts.time_steps})")
    adapted = config.copy_and_resolve_references()
    with adapted.unlocked():
        adapted.model.channel_wise = facts.channel_wise
        if "width_multiplier" in adapted.model.kwargs:
            adapted.model.kwargs.width_multiplier = facts.width_multiplier
    adapted.lock()
    logger.info("%s: %s, %d classes, T=%d, width x%g, %s neurons, from their %s", path, facts.architecture,
                facts.num_classes, facts.time_steps, facts.width_multiplier,
                "channel-wise" if facts.channel_wise else "layer-wise", facts.their_class)
    return adapted, facts


def check_classes(classes: int, config: Any, experiment: Experiment, path: str | Path) -> None:
    """Refuses a checkpoint (at ``path``, with ``classes`` outputs) whose head has another class
    count than the configured dataset."""
    if classes != experiment.num_classes:
        raise GatedLIFFormatError(
            f"{path} classifies {classes} classes, but the configured dataset "
            f"{config.dataset.name!r} has {experiment.num_classes}")


def imported_variables(config: Any, experiment: Experiment, path: str | Path) -> dict[str, Any]:
    """The checkpoint's ``{"params", "batch_stats"}`` for ``experiment.model`` (built from
    :func:`config_for`'s config); refuses a class count other than the dataset's."""
    model, variables = from_gated_lif(path, model=config.model.name, time_steps=experiment.model.time_steps,
                                      neuron=experiment.model.neuron)
    check_classes(model.num_classes, config, experiment, path)
    return variables


def initial_state_from(config: Any, experiment: Experiment, fresh: TrainState, path: str | Path) -> TrainState:
    """``fresh`` with the parameters and tdBN statistics of their checkpoint at ``path`` and an
    optimizer state initialised for them (a new run that starts from their network)."""
    variables = imported_variables(config, experiment, path)   # NumPy arrays
    check_variables_fit(variables, {"params": fresh.params, "batch_stats": fresh.batch_stats},
                        "their variables", f"the configured model ({path})")
    params = variables["params"]
    return fresh.replace(params=params, batch_stats=variables["batch_stats"],
                         opt_state=experiment.optimizer.init(params))


def import_to_workdir(config: Any, state: TrainState, path: str | Path, workdir: str | os.PathLike) -> os.PathLike:
    """Writes ``workdir/config.json`` and ``workdir/checkpoints/0``: a glif-jax run of their checkpoint.

    ``config`` as :func:`config_for` gives it; ``state`` as :func:`initial_state_from` gives it
    for that config. The checkpoint's meta names the source file ``path``. Raises
    ``FileExistsError`` when ``workdir`` already holds checkpoints."""
    workdir = workdir_path(workdir)
    save_config(workdir, config)
    with Checkpointer(workdir / CHECKPOINTS_DIR, keep=1, async_save=False) as checkpointer:
        if checkpointer.all_steps():
            raise FileExistsError(f"{workdir / CHECKPOINTS_DIR} already holds checkpoints; choose a new directory")
        checkpointer.save(0, state, {"epoch": 0, "imported_from": str(Path(path).absolute())})
    return workdir

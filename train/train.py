"""``train_and_evaluate(config, workdir)``: the whole training run, as in the Flax examples.

Per epoch: ``steps_per_epoch`` train steps (progress bar; metrics to ``metrics.jsonl`` and
TensorBoard every ``log_every_steps``), one evaluation, and every
``checkpoint.every_epochs`` epochs (and after the last) a checkpoint; also every
``checkpoint.every_steps`` steps when set (mid-epoch). The best evaluation top-1 is kept
besides the newest ``checkpoint.keep`` checkpoints.

A run never reports a diverged model as a good one: a step whose loss is not finite stops
the run (``config.nonfinite.action = "stop"``; ``TrainingDiverged`` names the step, nothing
after the last good checkpoint is saved), or a step whose loss or gradients are not finite
is skipped without changing the state (``"skip"``, up to ``nonfinite.max_consecutive_skips``
in a row).
Non-finite logits never count as correct.

SIGTERM or SIGINT (a cluster's preemption, Ctrl-C) saves a checkpoint after the current
step (after the evaluation, when it arrives during one) and raises ``RunInterrupted``.
Resuming continues from the newest intact checkpoint and ends with exactly the state an
uninterrupted run would have: the state (params, batch statistics, optimizer state,
step, RNG key) is restored bit for bit, the data order depends only on ``(seed, epoch)``
and a mid-epoch checkpoint carries the epoch's metric sums so far. A resume with a config
that changes the trajectory is refused (see ``glif_jax.train.config_changes``).

Work directory layout::

    config.json           the config the run was started with (never rewritten)
    config_history.jsonl  one record per resume: step, changed keys, the config used
    metrics.jsonl         train / eval records (see glif_jax.train.writers)
    tensorboard/          TensorBoard event files
    checkpoints/<step>/   the newest checkpoint.keep checkpoints and the best one
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import os
import time
from typing import Any, Callable

import jax

from glif_jax import parallel
from glif_jax.checkpoint import Checkpointer, CheckpointError
from glif_jax import workdir_lock
from glif_jax.workdir import CHECKPOINTS_DIR, CONFIG_FILE, load_config, save_config, workdir_path
from glif_jax.train import config_changes, steps
from glif_jax.train.evaluate import evaluate
from glif_jax.train.experiment import Experiment, build_experiment
from glif_jax.train.metrics import MeanAccumulator
from glif_jax.train.progress import epoch_progress, show_train_metrics
from glif_jax.train.state import TrainState, create_train_state
from glif_jax.train.stop_signals import RunInterrupted, StopSignals
from glif_jax.train.validation import ConfigError, validate_config
from glif_jax.train.writers import MetricWriter

logger = logging.getLogger(__name__)

RESUME_MODES = ("no", "yes", "auto")


class TrainingDiverged(RuntimeError):
    """A train step's loss was not finite (or too many non-finite steps were skipped)."""


class ConfigChangeError(ConfigError):
    """A resume with a config that alters the run's trajectory, without allowing it."""


def initial_state(config: Any, experiment: Experiment) -> TrainState:
    """The freshly initialised state of ``config.seed`` (also the restore target)."""
    return create_train_state(
        experiment.model,
        experiment.optimizer,
        rng=jax.random.PRNGKey(config.seed),
        input_shape=experiment.input_shape,
    )


def open_checkpointer(config: Any, workdir: str | os.PathLike, *, read_only: bool = False) -> Checkpointer:
    return Checkpointer(
        workdir_path(workdir) / CHECKPOINTS_DIR,
        keep=config.checkpoint.keep,
        async_save=config.checkpoint.async_save,
        read_only=read_only,
    )


def _resume_mode(resume: bool | str) -> str:
    if resume is True or resume is False:
        return "yes" if resume else "no"
    if resume not in RESUME_MODES:
        raise ValueError(f"resume must be one of {RESUME_MODES} (or a bool), got {resume!r}")
    return resume


def train_and_evaluate(
    config: Any,
    workdir: str | os.PathLike,
    *,
    resume: bool | str = "no",
    allow_config_change: bool = False,
    experiment: Experiment | None = None,
    stop_signals: StopSignals | None = None,
    init_from: str | os.PathLike | None = None,
) -> dict[str, float]:
    """Trains ``config`` in ``workdir`` and returns the final metrics.

    ``resume``: "no" (False) starts a new run and refuses a ``workdir`` that holds
    checkpoints; "yes" (True) continues the run in ``workdir`` from its newest intact
    checkpoint; "auto" continues when there is a checkpoint and starts otherwise (a
    requeued job). ``allow_config_change`` lets a resume proceed with a config that alters
    the trajectory (the change is recorded in ``config_history.jsonl``).

    Returns ``{"step", "epoch", "train_loss", "train_top1", "train_top5", "eval_loss",
    "eval_top1", "eval_top5", "eval_count", "best_eval_top1", "train_images_per_second",
    "eval_images_per_second", "skipped_steps"}`` (accuracies as fractions; speeds of the
    last epoch, wall time). ``experiment`` replaces the model/data/optimizer that
    ``config`` names (tests). ``stop_signals``: an active ``StopSignals`` of the caller
    (``glif-train`` installs one before it builds anything, so that no signal goes unseen
    and one that comes after training only lets the program finish); by default the run
    installs its own. ``init_from``: a new run starts from the parameters and tdBN
    statistics of one of the authors' checkpoints (``glif_jax.train.imported``; ``config``
    must fit it, e.g. through ``imported.config_for``); a resumed run ignores it.
    Raises ``ConfigError`` for a bad config or a refused config change, ``FileExistsError``
    when ``workdir`` already holds checkpoints and ``resume`` is "no", ``CheckpointError``
    when ``resume`` is "yes" and no intact checkpoint exists, ``TrainingDiverged`` and
    ``RunInterrupted`` as described in the module docstring.
    """
    options = validate_config(config)
    mode = _resume_mode(resume)
    workdir = workdir_path(workdir)
    strategy = options.strategy
    with contextlib.ExitStack() as stack:
        # entered first, left last: a signal during the final save only lets it finish
        signals = stop_signals if stop_signals is not None else stack.enter_context(StopSignals())
        stack.enter_context(workdir_lock.hold(workdir))   # before anything reads or writes the workdir
        checkpointer = stack.enter_context(open_checkpointer(config, workdir))
        changes = _check_resume(config, workdir, checkpointer, mode, allow_config_change)
        resuming = changes is not None
        if experiment is None:
            experiment = build_experiment(config, options)
        host_state, meta = initial_state(config, experiment), {}
        if resuming:
            host_state, meta = checkpointer.restore(host_state)
            logger.info("resumed from step %d (epoch %s) in %s", int(host_state.step), meta.get("epoch"), workdir)
        elif init_from is not None:
            from glif_jax.train import imported

            host_state = imported.initial_state_from(config, experiment, host_state, init_from)
            logger.info("starting from the parameters of %s", init_from)
        if jax.process_index() == 0:
            _record_config(config, workdir, changes, int(host_state.step))
        return _train(config, workdir, experiment, strategy, checkpointer, signals, host_state, meta)


def _check_resume(config: Any, workdir: os.PathLike, checkpointer: Checkpointer, mode: str,
                  allow_config_change: bool) -> dict[str, tuple[Any, Any]] | None:
    """None for a new run; for a resume, how ``config`` differs from the run's ``config.json``
    (empty when there is none to compare). Refuses a resume whose config changes the trajectory."""
    steps_on_disk = checkpointer.all_steps()
    if not steps_on_disk:
        if mode == "yes":
            raise CheckpointError(
                f"--resume: no checkpoint in {workdir / CHECKPOINTS_DIR} (a run killed before its first "
                "checkpoint restarts without --resume; --resume=auto does either)"
            )
        return None
    if mode == "no":
        raise FileExistsError(
            f"{workdir} already holds checkpoints (steps {steps_on_disk}); pass --resume (or --resume=auto) "
            "to continue that run, or choose a new --workdir"
        )
    if not (workdir / CONFIG_FILE).is_file():
        logger.warning("%s has checkpoints but no %s: the config cannot be compared", workdir, CONFIG_FILE)
        return {}
    changed = config_changes.changes(load_config(workdir), config)
    altering = config_changes.trajectory_changes(changed)
    if altering and not allow_config_change:
        raise ConfigChangeError(
            f"resuming {workdir} with a config that changes the training trajectory:\n"
            f"{config_changes.describe(altering)}\n"
            "Resume with the run's own config (glif-eval and the keys above show it: "
            f"{workdir / CONFIG_FILE}), or pass --allow_config_change to continue with these "
            f"changes deliberately (they are recorded in {workdir / config_changes.HISTORY_FILE})"
        )
    if altering:
        logger.warning("resuming with deliberate config changes:\n%s", config_changes.describe(altering))
    harmless = {key: value for key, value in changed.items() if key not in altering}
    if harmless:
        logger.info("resuming with changed settings that do not alter training:\n%s",
                    config_changes.describe(harmless))
    return changed


def _record_config(config: Any, workdir: os.PathLike, changes: dict[str, tuple[Any, Any]] | None, step: int) -> None:
    """A new run writes ``config.json``; a resume (``changes`` as ``_check_resume`` found them)
    appends to the history instead."""
    if changes is None or not (workdir / CONFIG_FILE).is_file():
        save_config(workdir, config)
        return
    config_changes.record_resume(workdir, step, changes, config)


class _Run:
    """The mutable bits of one training run that the epoch loop and its helpers share."""

    def __init__(self, config, experiment, strategy, checkpointer, stop_signals, writer, skip_nonfinite: bool,
                 skipped_steps: int):
        self.config, self.experiment = config, experiment
        self.strategy, self.checkpointer, self.stop_signals, self.writer = strategy, checkpointer, stop_signals, writer
        self.every_steps = config.checkpoint.get("every_steps")
        self.skip_nonfinite = skip_nonfinite
        self.max_consecutive_skips = (config.get("nonfinite") or {}).get("max_consecutive_skips", 1)
        self.consecutive_skips = 0
        self.skipped_steps = skipped_steps   # over the whole run, resumed ones included


def _skips_nonfinite(config: Any) -> bool:
    """``config.nonfinite.action == "skip"`` (runs saved before the key existed stop)."""
    return (config.get("nonfinite") or {}).get("action", "stop") == "skip"


def _train(config, workdir, experiment, strategy, checkpointer, stop_signals, host_state, meta) -> dict[str, float]:
    steps_per_epoch = experiment.steps_per_epoch
    eval_batch_size = parallel.per_process_batch_size(config.eval_batch_size)
    skip_nonfinite, skipped_steps = _skips_nonfinite(config), int(meta.get("skipped_steps", 0))
    train_fn = strategy.compile(
        functools.partial(
            steps.train_step,
            model=experiment.model,
            optimizer=experiment.optimizer,
            collectives=strategy.collectives,
            spike_stats=config.spike_stats,
            skip_nonfinite=skip_nonfinite,
        ),
        donate_state=True,
    )
    eval_fn = _compiled_eval_step(config, experiment, strategy)
    state = strategy.put_state(host_state)
    start_epoch, skip = divmod(int(host_state.step), steps_per_epoch)
    epoch_totals = MeanAccumulator.from_totals(meta.get("epoch_sums", {})) if skip else MeanAccumulator()
    results: dict[str, float] = {"best_eval_top1": max(checkpointer.best_value, 0.0),
                                 "skipped_steps": float(skipped_steps)}

    def run_evaluation() -> dict[str, float]:
        start = time.perf_counter()
        metrics = evaluate(
            eval_fn, state, experiment.eval_batches(),
            strategy=strategy, batch_size=eval_batch_size, max_batches=config.eval_steps,
        )
        # count is global: the eval step sums over every process's devices
        metrics["images_per_second"] = _images_per_second(metrics["count"], start)
        return metrics

    with MetricWriter(workdir) as writer:
        writer.truncate_after(int(host_state.step))
        run = _Run(config, experiment, strategy, checkpointer, stop_signals, writer,
                   skip_nonfinite=skip_nonfinite, skipped_steps=skipped_steps)
        for epoch in range(start_epoch, config.num_epochs):
            state, train_metrics = _train_epoch(run, train_fn, state, epoch, skip, epoch_totals)
            skip, epoch_totals = 0, MeanAccumulator()
            eval_metrics = run_evaluation()
            step = (epoch + 1) * steps_per_epoch
            writer.write(step, "eval", eval_metrics)
            results.update(_prefixed("train", train_metrics))
            results.update(_prefixed("eval", eval_metrics))
            results.update(step=step, epoch=epoch + 1, skipped_steps=float(run.skipped_steps))
            is_last = epoch + 1 == config.num_epochs
            stopping = stop_signals.requested(step)
            if (epoch + 1) % config.checkpoint.every_epochs == 0 or is_last or stopping:
                meta = {"epoch": epoch + 1, "skipped_steps": run.skipped_steps, **_prefixed("eval", eval_metrics)}
                checkpointer.save(step, strategy.fetch(state), meta)
            if math.isfinite(eval_metrics["top1"]):
                results["best_eval_top1"] = max(results["best_eval_top1"], eval_metrics["top1"])
            logger.info(
                "epoch %d/%d  step %d  eval loss %.4f  top-1 %.2f%%  top-5 %.2f%%  (best %.2f%%)  "
                "train %.0f img/s, eval %.0f img/s",
                epoch + 1, config.num_epochs, step, eval_metrics["loss"],
                100 * eval_metrics["top1"], 100 * eval_metrics["top5"],
                100 * results["best_eval_top1"],
                train_metrics["images_per_second"], eval_metrics["images_per_second"],
            )
            if stopping and not is_last:
                checkpointer.wait()
                raise RunInterrupted(stop_signals.signal_number, step, checkpointer.directory)
        if "eval_top1" not in results:  # resumed a finished run: just report it
            results.update(_prefixed("eval", run_evaluation()))
            results.update(step=int(host_state.step), epoch=start_epoch)
    return results


def _train_epoch(run: _Run, train_fn, state, epoch: int, skip: int, epoch_totals: MeanAccumulator):
    """Steps ``skip .. steps_per_epoch - 1`` of ``epoch``; returns (state, epoch metrics).

    ``epoch_totals`` holds the metric sums of the steps before ``skip`` (a resumed epoch).
    """
    config, experiment, strategy = run.config, run.experiment, run.strategy
    steps_per_epoch = experiment.steps_per_epoch
    batches = iter(experiment.train_batches(epoch))
    pending = []
    steps_done = skip
    window_start = epoch_start = time.perf_counter()
    bar = epoch_progress(epoch, config.num_epochs, steps_per_epoch, initial=skip)
    try:
        for index, batch in enumerate(itertools.islice(batches, skip, steps_per_epoch), start=skip):
            state, sums = train_fn(state, strategy.put_batch(batch))
            pending.append(sums)
            steps_done = index + 1
            bar.update()
            step = epoch * steps_per_epoch + index + 1
            end_of_epoch = index + 1 == steps_per_epoch
            checkpoint_due = bool(run.every_steps) and step % run.every_steps == 0 and not end_of_epoch
            stopping = not end_of_epoch and run.stop_signals.requested(step)
            if step % config.log_every_steps and not (end_of_epoch or checkpoint_due or stopping):
                continue
            window = _flush_window(run, pending, step, epoch_totals)
            if window.count > 0:
                record = window.result()
                record.pop("count")
                record["images_per_second"] = _images_per_second(len(pending) * config.batch_size, window_start)
                # the learning rates of the window's last update (optax counts updates from 0)
                record.update({f"lr/{group}": lr for group, lr in experiment.learning_rates(step - 1).items()})
                run.writer.write(step, "train", record)
                show_train_metrics(bar, loss=record["loss"], top1=record["top1"],
                                   images_per_second=record["images_per_second"])
                logger.info("step %d  loss %.4f  top-1 %.2f%%  %.0f img/s", step, record["loss"],
                            100 * record["top1"], record["images_per_second"])
            pending = []
            if checkpoint_due or stopping:
                meta = {"epoch": epoch, "epoch_sums": epoch_totals.totals, "skipped_steps": run.skipped_steps}
                run.checkpointer.save(step, strategy.fetch(state), meta)
            if stopping:
                run.checkpointer.wait()
                raise RunInterrupted(run.stop_signals.signal_number, step, run.checkpointer.directory)
            window_start = time.perf_counter()
    finally:
        bar.close()
        if hasattr(batches, "close"):
            batches.close()  # stops a prefetching thread of an infinite stream
    if steps_done < steps_per_epoch:
        raise ValueError(
            f"the train data of epoch {epoch} ran out after {steps_done} batches; "
            f"config.steps_per_epoch={steps_per_epoch} needs more"
        )
    if epoch_totals.count > 0:
        metrics = epoch_totals.result()
        metrics.pop("count")
    else:
        metrics = {"loss": math.nan, "top1": math.nan, "top5": math.nan}
    # the whole epoch's wall time: data, steps and logging (the first epoch also compiles)
    metrics["images_per_second"] = _images_per_second((steps_done - skip) * config.batch_size, epoch_start)
    return state, metrics


def _flush_window(run: _Run, pending: list, last_step: int, epoch_totals: MeanAccumulator) -> MeanAccumulator:
    """Brings the window's metric sums to the host, checks each step for non-finite values
    and adds the finite ones to ``epoch_totals``; returns the window's accumulator."""
    window = MeanAccumulator()
    first_step = last_step - len(pending) + 1
    for offset, sums in enumerate(run.strategy.fetch(pending)):
        step = first_step + offset
        if float(sums.pop(steps.NONFINITE)) > 0:
            _on_nonfinite(run, step)
            continue
        run.consecutive_skips = 0
        window.add(sums)
        epoch_totals.add(sums)
    return window


def _on_nonfinite(run: _Run, step: int) -> None:
    checkpoints = run.checkpointer.all_steps()
    kept = (f"the last good checkpoints are kept in {run.checkpointer.directory} (steps {checkpoints})"
            if checkpoints else "no checkpoint had been saved yet")
    if not run.skip_nonfinite:
        raise TrainingDiverged(
            f"training diverged: the loss is not finite at step {step} "
            f"(epoch {(step - 1) // run.experiment.steps_per_epoch + 1}); nothing after it was saved and "
            f"{kept}. Lower config.optim.base_lr, or set config.nonfinite.action=skip to skip such steps"
        )
    run.skipped_steps += 1
    run.consecutive_skips += 1
    logger.warning("step %d: the loss or a gradient is not finite; the update was skipped "
                   "(%d in a row, %d in this run)", step, run.consecutive_skips, run.skipped_steps)
    if run.consecutive_skips > run.max_consecutive_skips:
        raise TrainingDiverged(
            f"training diverged: {run.consecutive_skips} consecutive steps up to step {step} had a "
            f"non-finite loss or gradient (config.nonfinite.max_consecutive_skips="
            f"{run.max_consecutive_skips}); {kept}"
        )


def _images_per_second(images: float, since: float) -> float:
    """``images`` over the wall time since ``since`` (a ``time.perf_counter()`` reading)."""
    return images / max(time.perf_counter() - since, 1e-9)


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{name}": value for name, value in metrics.items()}


def evaluate_checkpoint(
    config: Any,
    workdir: str | os.PathLike,
    *,
    which: str = "best",
    step: int | None = None,
    experiment: Experiment | None = None,
) -> dict[str, float]:
    """Evaluates a checkpoint of the run in ``workdir`` ("best" or "latest", newest or ``step``).

    Returns ``{"step", "eval_loss", "eval_top1", "eval_top5", "eval_count"}``. Raises
    ``CheckpointError`` when there is no such checkpoint or it does not fit the config.
    """
    options = validate_config(config)
    workdir = workdir_path(workdir)
    strategy = options.strategy
    if experiment is None:
        experiment = build_experiment(config, options)
    checkpointer = open_checkpointer(config, workdir, read_only=True)
    try:
        host_state, _ = checkpointer.restore(initial_state(config, experiment), which=which, step=step)
    finally:
        checkpointer.close()
    return evaluate_state(config, experiment, host_state, strategy)


def evaluate_state(config: Any, experiment: Experiment, host_state: TrainState,
                   strategy: parallel.DataParallel) -> dict[str, float]:
    """Evaluates ``host_state`` (a state of ``experiment``'s model, on the host) on the eval split.

    Returns ``{"step", "eval_loss", "eval_top1", "eval_top5", "eval_count"}``.
    """
    metrics = evaluate(
        _compiled_eval_step(config, experiment, strategy),
        strategy.put_state(host_state),
        experiment.eval_batches(),
        strategy=strategy,
        batch_size=parallel.per_process_batch_size(config.eval_batch_size),
        max_batches=config.eval_steps,
    )
    return {"step": int(host_state.step), **_prefixed("eval", metrics)}


def _compiled_eval_step(config: Any, experiment: Experiment, strategy: parallel.DataParallel) -> Callable:
    return strategy.compile(
        functools.partial(steps.eval_step, model=experiment.model, collectives=strategy.collectives,
                          spike_stats=config.spike_stats)
    )

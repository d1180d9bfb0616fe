"""``train_and_evaluate(config, workdir)``: the whole training run, as in the Flax examples.

Per epoch: ``steps_per_epoch`` train steps (progress bar; metrics to ``metrics.jsonl`` and
TensorBoard every ``log_every_steps``), one evaluation, and every
``checkpoint.every_epochs`` epochs (and after the last) a checkpoint; the best evaluation
top-1 is kept in its own checkpoint. ``resume=True`` continues from the newest checkpoint
of ``workdir`` and ends with exactly the state an uninterrupted run would have: the state
(params, batch statistics, optimizer state, step, RNG key) is restored bit for bit and the
data order depends only on ``(seed, epoch)``.

Work directory layout::

    config.json          the config of the run
    metrics.jsonl        train / eval records (see train.writers)
    tensorboard/         TensorBoard event files
    checkpoints/latest/  the last checkpoint.keep periodic checkpoints
    checkpoints/best/    the checkpoint with the best eval top-1
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from pathlib import Path
from typing import Any

import jax

from glif_jax import parallel
from glif_jax.checkpoint import CHECKPOINTS_DIR, Checkpointer, CheckpointError, load_config, save_config
from train import steps
from train.evaluate import evaluate
from train.experiment import Experiment, build_experiment
from train.metrics import MeanAccumulator
from train.progress import epoch_progress, show_train_metrics
from train.state import TrainState, create_train_state
from train.validation import validate_config
from train.writers import MetricWriter

logger = logging.getLogger(__name__)


def initial_state(config: Any, experiment: Experiment) -> TrainState:
    """The freshly initialised state of ``config.seed`` (also the restore target)."""
    return create_train_state(
        experiment.model,
        experiment.optimizer,
        rng=jax.random.PRNGKey(config.seed),
        input_shape=experiment.input_shape,
    )


def open_checkpointer(config: Any, workdir: Path, *, read_only: bool = False) -> Checkpointer:
    return Checkpointer(
        workdir / CHECKPOINTS_DIR,
        keep=config.checkpoint.keep,
        async_save=config.checkpoint.async_save,
        read_only=read_only,
    )


def train_and_evaluate(
    config: Any,
    workdir: str | Path,
    *,
    resume: bool = False,
    experiment: Experiment | None = None,
) -> dict[str, float]:
    """Trains ``config`` in ``workdir`` and returns the final metrics.

    Returns ``{"step", "epoch", "train_loss", "train_top1", "train_top5", "eval_loss",
    "eval_top1", "eval_top5", "eval_count", "best_eval_top1", "train_images_per_second",
    "eval_images_per_second"}`` (accuracies as fractions; speeds of the last epoch, wall time).
    ``experiment`` replaces the model/data/optimizer that ``config`` names (tests).
    Raises ``ConfigError`` for a bad config, ``FileExistsError`` when ``workdir`` already
    holds checkpoints and ``resume`` is False, ``CheckpointError`` when ``resume`` finds no
    usable checkpoint.
    """
    validate_config(config)
    workdir = Path(workdir)
    strategy = parallel.make_strategy(config.parallel)
    if experiment is None:
        experiment = build_experiment(config, bn_axis_name=strategy.bn_axis_name)
    steps_per_epoch = experiment.steps_per_epoch
    eval_batch_size = parallel.per_process_batch_size(config.eval_batch_size)

    checkpointer = open_checkpointer(config, workdir)
    host_state = initial_state(config, experiment)
    try:
        host_state = _starting_state(config, workdir, checkpointer, host_state, resume)
    except BaseException:
        checkpointer.close()
        raise
    if jax.process_index() == 0:
        save_config(workdir, config)

    train_fn = strategy.compile(
        functools.partial(
            steps.train_step,
            model=experiment.model,
            optimizer=experiment.optimizer,
            axis_name=strategy.axis_name,
            spike_stats=config.spike_stats,
        ),
        donate_state=True,
    )
    eval_fn = strategy.compile(
        functools.partial(steps.eval_step, model=experiment.model, axis_name=strategy.axis_name,
                          spike_stats=config.spike_stats)
    )
    state = strategy.put_state(host_state)
    start_epoch, skip = divmod(int(host_state.step), steps_per_epoch)
    results: dict[str, float] = {"best_eval_top1": max(checkpointer.best_value, 0.0)}

    def run_evaluation() -> dict[str, float]:
        start = time.perf_counter()
        metrics = evaluate(
            eval_fn, state, experiment.eval_batches(),
            strategy=strategy, batch_size=eval_batch_size, max_batches=config.eval_steps,
        )
        # count is this process's examples; every process evaluates its share at the same time
        metrics["images_per_second"] = _images_per_second(metrics["count"] * jax.process_count(), start)
        return metrics

    with MetricWriter(workdir) as writer:
        writer.truncate_after(int(host_state.step))
        try:
            for epoch in range(start_epoch, config.num_epochs):
                state, train_metrics = _train_epoch(
                    config, experiment, strategy, train_fn, state, writer, epoch, skip
                )
                skip = 0
                eval_metrics = run_evaluation()
                step = (epoch + 1) * steps_per_epoch
                writer.write(step, "eval", eval_metrics)
                results.update(_prefixed("train", train_metrics))
                results.update(_prefixed("eval", eval_metrics))
                results.update(step=step, epoch=epoch + 1)
                is_last = epoch + 1 == config.num_epochs
                if (epoch + 1) % config.checkpoint.every_epochs == 0 or is_last:
                    meta = {"epoch": epoch + 1, **_prefixed("eval", eval_metrics)}
                    checkpointer.save(step, strategy.fetch(state), meta)
                results["best_eval_top1"] = max(results["best_eval_top1"], eval_metrics["top1"])
                logger.info(
                    "epoch %d/%d  step %d  eval loss %.4f  top-1 %.2f%%  top-5 %.2f%%  (best %.2f%%)  "
                    "train %.0f img/s, eval %.0f img/s",
                    epoch + 1, config.num_epochs, step, eval_metrics["loss"],
                    100 * eval_metrics["top1"], 100 * eval_metrics["top5"],
                    100 * results["best_eval_top1"],
                    train_metrics["images_per_second"], eval_metrics["images_per_second"],
                )
            if "eval_top1" not in results:  # resumed a finished run: just report it
                results.update(_prefixed("eval", run_evaluation()))
                results.update(step=int(host_state.step), epoch=start_epoch)
        finally:
            checkpointer.close()
    return results


def _starting_state(config: Any, workdir: Path, checkpointer: Checkpointer, fresh: TrainState,
                    resume: bool) -> TrainState:
    """The restored state when resuming; ``fresh`` for a new run in an empty workdir."""
    latest = checkpointer.latest_step()
    if not resume:
        if latest is not None:
            raise FileExistsError(
                f"{workdir} already holds checkpoints (latest step {latest}); "
                "pass --resume to continue that run, or choose a new --workdir"
            )
        return fresh
    if latest is None:
        raise CheckpointError(
            f"--resume: no latest checkpoint in {workdir / CHECKPOINTS_DIR} (a run killed before its "
            "first checkpoint restarts without --resume)"
        )
    state, meta = checkpointer.restore(fresh)
    logger.info("resumed from step %d (epoch %s) in %s", int(state.step), meta.get("epoch"), workdir)
    _warn_if_config_changed(config, workdir)
    return state


def _train_epoch(config, experiment, strategy, train_fn, state, writer, epoch: int, skip: int):
    """Steps ``skip .. steps_per_epoch - 1`` of ``epoch``; returns (state, epoch metrics)."""
    steps_per_epoch = experiment.steps_per_epoch
    batches = iter(experiment.train_batches(epoch))
    epoch_totals = MeanAccumulator()
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
            if step % config.log_every_steps and index + 1 < steps_per_epoch:
                continue
            window = MeanAccumulator()
            for pending_sums in strategy.fetch(pending):
                window.add(pending_sums)
                epoch_totals.add(pending_sums)
            record = window.result()
            record["images_per_second"] = _images_per_second(len(pending) * config.batch_size, window_start)
            # the learning rates of the window's last update (optax counts updates from 0)
            record.update({f"lr/{group}": lr for group, lr in experiment.learning_rates(step - 1).items()})
            record.pop("count")
            writer.write(step, "train", record)
            show_train_metrics(bar, loss=record["loss"], top1=record["top1"],
                               images_per_second=record["images_per_second"])
            logger.info("step %d  loss %.4f  top-1 %.2f%%  %.0f img/s", step, record["loss"],
                        100 * record["top1"], record["images_per_second"])
            pending = []
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
    metrics = epoch_totals.result()
    metrics.pop("count")
    # the whole epoch's wall time: data, steps and logging (the first epoch also compiles)
    metrics["images_per_second"] = _images_per_second((steps_done - skip) * config.batch_size, epoch_start)
    return state, metrics


def _images_per_second(images: float, since: float) -> float:
    """``images`` over the wall time since ``since`` (a ``time.perf_counter()`` reading)."""
    return images / max(time.perf_counter() - since, 1e-9)


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{name}": value for name, value in metrics.items()}


def _warn_if_config_changed(config: Any, workdir: Path) -> None:
    try:
        stored = load_config(workdir)
    except CheckpointError:
        return
    if stored.to_json(sort_keys=True) != config.to_json(sort_keys=True):
        logger.warning("resuming with a config that differs from %s/config.json", workdir)


def evaluate_checkpoint(
    config: Any,
    workdir: str | Path,
    *,
    which: str = "best",
    step: int | None = None,
    experiment: Experiment | None = None,
) -> dict[str, float]:
    """Evaluates a checkpoint of the run in ``workdir`` ("best" or "latest", newest or ``step``).

    Returns ``{"step", "eval_loss", "eval_top1", "eval_top5", "eval_count"}``. Raises
    ``CheckpointError`` when there is no such checkpoint or it does not fit the config.
    """
    validate_config(config)
    workdir = Path(workdir)
    strategy = parallel.make_strategy(config.parallel)
    if experiment is None:
        experiment = build_experiment(config, bn_axis_name=strategy.bn_axis_name)
    checkpointer = open_checkpointer(config, workdir, read_only=True)
    try:
        host_state, _ = checkpointer.restore(initial_state(config, experiment), which=which, step=step)
    finally:
        checkpointer.close()
    eval_fn = strategy.compile(
        functools.partial(steps.eval_step, model=experiment.model, axis_name=strategy.axis_name,
                          spike_stats=config.spike_stats)
    )
    metrics = evaluate(
        eval_fn,
        strategy.put_state(host_state),
        experiment.eval_batches(),
        strategy=strategy,
        batch_size=parallel.per_process_batch_size(config.eval_batch_size),
        max_batches=config.eval_steps,
    )
    return {"step": int(host_state.step), **_prefixed("eval", metrics)}

"""glif_jax.train.train: the loop's outputs, reproducibility and exact resume.

Runs `train_and_evaluate` on the stand-ins of tests/train_standins.py (a BatchNorm
ConvNet on in-memory data): 2-3 epochs of 4 steps of batch 8; and, for how a run uses its
data, `build_experiment` on the real default data (scikit-learn's digits).
"""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest

from glif_jax import data
from glif_jax.checkpoint import CheckpointError, Checkpointer
from glif_jax.configs import base
from glif_jax.data import digits
from glif_jax.data.normalization import normalize
from glif_jax.train.experiment import build_experiment
from glif_jax.train.state import TrainState
from glif_jax.train.train import evaluate_checkpoint, train_and_evaluate
from glif_jax.train.validation import validate_config
from tests.comparison import assert_bit_identical
from tests.data_reference import assert_batches_equal, reference_batches
from tests.train_standins import (Interrupted, logged_steps, make_experiment, records, restored_state, resumed_at,
                                  small_config)

NUM_EPOCHS = 3
STEPS_PER_EPOCH = 4


def run(workdir, *, resume=False, interrupt_at_batch=None, **overrides):
    config = small_config(num_epochs=NUM_EPOCHS, steps_per_epoch=STEPS_PER_EPOCH, **overrides)
    experiment = make_experiment(config, interrupt_at_batch=interrupt_at_batch)
    return train_and_evaluate(config, workdir, resume=resume, experiment=experiment)


def final_state(workdir, **overrides) -> TrainState:
    return restored_state(workdir, small_config(num_epochs=NUM_EPOCHS, steps_per_epoch=STEPS_PER_EPOCH, **overrides))




@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted run: its workdir and the returned metrics."""
    workdir = tmp_path_factory.mktemp("reference")
    return workdir, run(workdir)


def last_eval_speed(logged):
    return [r for r in logged if r["split"] == "eval"][-1]["images_per_second"]


def test_run_writes_metrics_tensorboard_config_and_checkpoints(reference_run):
    workdir, results = reference_run
    logged = records(workdir)
    train_steps = [r["step"] for r in logged if r["split"] == "train"]
    eval_steps = [r["step"] for r in logged if r["split"] == "eval"]
    assert train_steps == list(range(2, 13, 2))  # log_every_steps=2
    assert eval_steps == [4, 8, 12]  # every epoch
    for record in logged:
        assert {"loss", "top1", "top5"} <= set(record)
    assert {"images_per_second", "lr/weights"} <= set(logged[0])
    for record in logged:   # every train window and every evaluation reports its speed
        assert 0 < record["images_per_second"] < float("inf")
    assert 0 < results["train_images_per_second"] < float("inf")
    assert results["eval_images_per_second"] == pytest.approx(last_eval_speed(logged))
    last_eval = [r for r in logged if r["split"] == "eval"][-1]
    assert results["eval_top1"] == pytest.approx(last_eval["top1"])
    assert results["eval_count"] == 20  # the whole eval split, last batch padded
    assert results["step"] == 12 and results["epoch"] == NUM_EPOCHS
    assert results["best_eval_top1"] == pytest.approx(max(r["top1"] for r in logged if r["split"] == "eval"))
    assert json.loads((workdir / "config.json").read_text())["num_epochs"] == NUM_EPOCHS
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    with Checkpointer(workdir / "checkpoints", read_only=True) as checkpointer:
        best_step = checkpointer.best_step()
        assert set(checkpointer.all_steps()) == {8, 12, best_step}   # keep=2, plus the best
    eval_top1 = {r["step"]: r["top1"] for r in logged if r["split"] == "eval"}
    assert eval_top1[best_step] == max(eval_top1.values())
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == sorted(
        str(step) for step in {8, 12, best_step})


def test_tensorboard_events_hold_the_scalars(reference_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    workdir, results = reference_run
    events = EventAccumulator(str(workdir / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/top1", "eval/top1", "eval/loss"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("eval/top1")] == [4, 8, 12]
    assert events.Scalars("eval/top1")[-1].value == pytest.approx(results["eval_top1"])


def test_training_learns(reference_run):
    """Train loss falls over the run (the stand-in task is learnable)."""
    workdir, _ = reference_run
    losses = [r["loss"] for r in records(workdir) if r["split"] == "train"]
    assert losses[-1] < 0.8 * losses[0]


def test_same_seed_gives_bit_identical_parameters(reference_run, tmp_path):
    workdir, _ = reference_run
    run(tmp_path / "again")
    assert_bit_identical(final_state(tmp_path / "again"), final_state(workdir))
    run(tmp_path / "other_seed", seed=1)
    other = final_state(tmp_path / "other_seed", seed=1)
    assert not np.array_equal(other.params["Dense_0"]["kernel"], final_state(workdir).params["Dense_0"]["kernel"])


def test_interrupted_and_resumed_run_equals_uninterrupted_run(reference_run, tmp_path):
    """Killed in the middle of epoch 2 (after the epoch-1 checkpoint), then resumed: the final
    params, batch statistics, optimizer state, step and RNG key are bit-identical."""
    workdir, results = reference_run
    interrupted = tmp_path / "interrupted"
    with pytest.raises(Interrupted):
        run(interrupted, interrupt_at_batch=STEPS_PER_EPOCH + 2)
    with pytest.raises(FileExistsError, match="--resume"):
        run(interrupted)  # no silent restart over an existing run
    resumed_results = run(interrupted, resume=True)
    assert resumed_at(interrupted) == [STEPS_PER_EPOCH]   # from the epoch-1 checkpoint, not from scratch
    assert_bit_identical(final_state(interrupted), final_state(workdir))
    assert resumed_results["eval_top1"] == results["eval_top1"]
    assert resumed_results["eval_loss"] == results["eval_loss"]
    assert logged_steps(interrupted) == logged_steps(workdir)  # redone steps were not logged twice


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="--resume: no checkpoint in"):
        run(tmp_path / "empty", resume=True)


def test_resuming_a_finished_run_only_reports(reference_run, tmp_path):
    workdir, results = reference_run
    again = run(workdir, resume=True)
    assert again["step"] == 12
    assert again["eval_top1"] == pytest.approx(results["eval_top1"])


def test_evaluate_checkpoint_reproduces_the_final_evaluation(reference_run):
    workdir, results = reference_run
    config = small_config(num_epochs=NUM_EPOCHS, steps_per_epoch=STEPS_PER_EPOCH)
    latest = evaluate_checkpoint(config, workdir, which="latest", experiment=make_experiment(config))
    assert latest["step"] == 12
    assert latest["eval_top1"] == pytest.approx(results["eval_top1"])
    assert latest["eval_loss"] == pytest.approx(results["eval_loss"], rel=1e-6)
    best = evaluate_checkpoint(config, workdir, which="best", experiment=make_experiment(config))
    assert best["eval_top1"] == pytest.approx(results["best_eval_top1"])


def digits_config(**overrides):
    """The default config's data and model (digits, tiny_convnet), T = 2, changed by ``overrides``."""
    config = base.digits("tiny_convnet", time_steps=2)
    with config.unlocked():
        config.update(overrides)
    return config


def test_epoch_e_of_a_real_run_keeps_the_reference_order():
    """build_experiment's epoch e: the digits batches training runs have always used, also
    when config.steps_per_epoch reaches past one pass (1437 // 64 = 22 batches)."""
    config = digits_config(seed=3, steps_per_epoch=25)
    experiment = build_experiment(config, validate_config(config))
    images, labels = digits.load_split("train")
    for epoch in (2, 0):
        expected = reference_batches(images, labels, 64, 3, epoch, 25, lambda raw, rng: normalize(raw, "digits"))
        assert_batches_equal(itertools.islice(experiment.train_batches(epoch), 25), expected)


def test_the_config_is_read_once_and_its_objects_are_passed_down(monkeypatch):
    """validate_config reads each section once; build_experiment builds from what it returned
    (the model's description is made once, and the model holds that very object)."""
    from glif_jax.models import registry

    specs_made = []
    get_spec = registry.get_spec
    monkeypatch.setattr(registry, "get_spec", lambda *args, **kwargs: specs_made.append(args) or get_spec(*args, **kwargs))
    config = digits_config(steps_per_epoch=2)
    options = validate_config(config)
    experiment = build_experiment(config, options)
    assert specs_made == [("tiny_convnet",)]
    assert experiment.model.spec is options.model.spec
    assert (experiment.model.time_steps, experiment.model.neuron) == (2, options.model.neuron)
    longer = dataclasses.replace(options, model=dataclasses.replace(options.model, time_steps=3))
    assert build_experiment(config, longer).model.time_steps == 3   # the options decide, not the config again


def test_a_run_builds_each_split_once(tmp_path, monkeypatch):
    """Three epochs and three evaluations on the digits: one build (and one read) per split."""
    builds, reads = [], []
    build, load_split = data.build, digits.load_split
    monkeypatch.setattr(data, "build",
                        lambda *args, **kwargs: (builds.append(kwargs["split"]), build(*args, **kwargs))[1])
    monkeypatch.setattr(digits, "load_split", lambda split: (reads.append(split), load_split(split))[1])
    config = digits_config(num_epochs=3, steps_per_epoch=2, batch_size=16, eval_batch_size=16, eval_steps=2,
                           log_every_steps=2)
    results = train_and_evaluate(config, tmp_path)
    assert results["step"] == 6 and results["eval_count"] == 32
    assert sorted(builds) == sorted(reads) == ["eval", "train"]

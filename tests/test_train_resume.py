"""glif_jax.train.train: runs that never lie and survive interruptions.

Divergence (non-finite loss: stop naming the step, or skip), SIGTERM/SIGINT (checkpoint,
then stop), mid-epoch checkpoints, ``resume="auto"``, damaged checkpoints, and resumes with
a changed config — on the stand-ins of tests/train_standins.py: 3 epochs of 4 steps.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal

import jax
import numpy as np
import pytest

from glif_jax.checkpoint import Checkpointer
from glif_jax.train import config_changes
from glif_jax.train.stop_signals import RunInterrupted
from glif_jax.train.train import ConfigChangeError, TrainingDiverged, initial_state, train_and_evaluate
from tests.comparison import assert_bit_identical
from tests.train_standins import (Interrupted, logged_steps, make_experiment, records, restored_state, resumed_at,
                                  small_config)

NUM_EPOCHS = 3
STEPS_PER_EPOCH = 4


def config_of(**overrides):
    return small_config(num_epochs=NUM_EPOCHS, steps_per_epoch=STEPS_PER_EPOCH, **overrides)


def run(workdir, *, resume="no", allow_config_change=False, batch_hook=None, interrupt_at_batch=None, **overrides):
    config = config_of(**overrides)
    experiment = make_experiment(config, batch_hook=batch_hook, interrupt_at_batch=interrupt_at_batch)
    return train_and_evaluate(config, workdir, resume=resume, allow_config_change=allow_config_change,
                              experiment=experiment)


def saved_steps(workdir):
    with Checkpointer(workdir / "checkpoints", read_only=True) as checkpointer:
        return checkpointer.all_steps()


def final_state(workdir, **overrides):
    return restored_state(workdir, config_of(**overrides))


def state_at(workdir, step, **overrides):
    """The checkpoint of ``step`` of the stand-in run in ``workdir``, as a TrainState."""
    config = config_of(**overrides)
    with Checkpointer(workdir / "checkpoints", read_only=True) as checkpointer:
        return checkpointer.restore(initial_state(config, make_experiment(config)), step=step)[0]


EVERY_OTHER_STEP = {"train": [2, 4, 6, 8, 10, 12], "eval": [4, 8, 12]}   # log_every_steps=2, an eval per epoch




@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run with a mid-epoch checkpoint every 3 steps: (workdir, results)."""
    workdir = tmp_path_factory.mktemp("reference")
    return workdir, run(workdir, **{"checkpoint.every_steps": 3})


def poison_batch(at: int):
    """A batch hook that puts a NaN into the images of the ``at``-th train batch."""
    def hook(index, batch):
        if index == at:
            batch = dict(batch, image=batch["image"].copy())
            batch["image"][0, 0, 0, 0] = np.nan
        return batch
    return hook


# ---- divergence --------------------------------------------------------------------------
def test_a_diverging_run_stops_at_the_first_non_finite_step_and_keeps_the_good_checkpoints(tmp_path):
    """Batch 6 (step 7, epoch 2) makes the loss NaN: the run stops naming step 7 and epoch 2,
    before evaluating or saving the NaN state; epoch 1's checkpoint stays the newest."""
    with pytest.raises(TrainingDiverged, match=r"not finite at step 7 \(epoch 2\).*steps \[4\]"):
        run(tmp_path, batch_hook=poison_batch(6))
    assert saved_steps(tmp_path) == [4]
    assert [r["step"] for r in records(tmp_path) if r["split"] == "eval"] == [4]
    state = final_state(tmp_path)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state.params))


def test_a_huge_learning_rate_diverges_and_is_never_reported_as_accurate(tmp_path):
    """Logging every step, the steps before the divergence are logged with finite losses; the
    diverged step is not, no evaluation is reported and no checkpoint is written."""
    with pytest.raises(TrainingDiverged, match=r"not finite at step (\d+)") as diverged:
        run(tmp_path, log_every_steps=1, **{"optim.base_lr": 1e30})
    diverged_at = int(re.search(r"not finite at step (\d+)", str(diverged.value)).group(1))
    assert diverged_at >= 2   # the first step's loss is computed before any update
    assert logged_steps(tmp_path) == {"train": list(range(1, diverged_at))}
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["top1"]) for r in records(tmp_path))
    assert saved_steps(tmp_path) == []


def test_skip_mode_skips_the_non_finite_step_without_touching_the_state(tmp_path, reference, caplog):
    """With nonfinite.action="skip", the poisoned step changes nothing but the step counter:
    the checkpoint after step 7 holds exactly the parameters, batch statistics and optimizer
    state of the one after step 6. Its metrics exclude the step."""
    skipping = {"nonfinite.action": "skip", "checkpoint.every_steps": 1, "checkpoint.keep": 7}
    results = run(tmp_path, batch_hook=poison_batch(6), **skipping)
    assert results["skipped_steps"] == 1
    assert "step 7: the loss or a gradient is not finite; the update was skipped" in caplog.text
    assert all(np.isfinite(r["loss"]) for r in records(tmp_path))
    before, after = state_at(tmp_path, 6, **skipping), state_at(tmp_path, 7, **skipping)
    assert (int(before.step), int(after.step)) == (6, 7)
    assert_bit_identical((after.params, after.batch_stats, after.opt_state),
                         (before.params, before.batch_stats, before.opt_state))
    state = final_state(tmp_path, **skipping)
    assert int(state.step) == NUM_EPOCHS * STEPS_PER_EPOCH
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state.params))
    reference_state = final_state(reference[0])
    assert not np.array_equal(state.params["Dense_0"]["kernel"], reference_state.params["Dense_0"]["kernel"])


def test_skip_mode_still_stops_after_too_many_consecutive_skips(tmp_path):
    everything_nan = lambda index, batch: dict(batch, image=np.full_like(batch["image"], np.nan))  # noqa: E731
    with pytest.raises(TrainingDiverged, match=r"4 consecutive steps up to step 4 .*max_consecutive_skips=3"):
        run(tmp_path, batch_hook=everything_nan, **{"nonfinite.action": "skip"})
    assert saved_steps(tmp_path) == []


# ---- stop signals ------------------------------------------------------------------------
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_saves_a_checkpoint_and_the_resumed_run_is_bit_identical(tmp_path, reference, stop_signal):
    """The signal arrives while batch 9 is loaded (epoch 3): step 10 finishes, is saved,
    the run raises RunInterrupted (exit status 128 + signal); resuming gives exactly the
    uninterrupted run, including the last epoch's train metrics (the checkpoint carries the
    epoch's sums so far), and the handlers are restored."""
    previous = signal.getsignal(stop_signal)

    def send_signal(index, batch):
        if index == 9:
            os.kill(os.getpid(), stop_signal)
        return batch

    with pytest.raises(RunInterrupted, match=f"stopped by {stop_signal.name} at step 10") as stopped:
        run(tmp_path, batch_hook=send_signal)
    assert stopped.value.exit_status == 128 + stop_signal
    assert signal.getsignal(stop_signal) is previous
    assert saved_steps(tmp_path)[-2:] == [8, 10]
    results = run(tmp_path, resume="auto")
    assert resumed_at(tmp_path) == [10]
    assert logged_steps(tmp_path) == EVERY_OTHER_STEP
    assert_bit_identical(final_state(tmp_path), final_state(reference[0]))
    for key in ("train_loss", "train_top1", "eval_loss", "eval_top1", "best_eval_top1"):
        assert results[key] == reference[1][key], key


# ---- mid-epoch checkpoints, auto resume ---------------------------------------------------
def test_every_steps_adds_mid_epoch_checkpoints(reference):
    workdir, _ = reference
    with Checkpointer(workdir / "checkpoints", read_only=True) as checkpointer:
        best = checkpointer.best_step()
        steps = checkpointer.all_steps()
        metas = {step: checkpointer.meta(step) for step in steps}
    assert set(steps) == {9, 12} | {best}       # 3, 6, 9 mid-epoch; 4, 8, 12 epoch ends; keep=2
    assert "epoch_sums" in metas[9] and metas[9]["epoch"] == 2   # in epoch 3 (0-based 2)
    assert "eval_top1" in metas[12] and "eval_top1" not in metas[9]


def test_resume_auto_starts_a_new_run_or_continues_one_killed_after_a_mid_epoch_checkpoint(tmp_path, reference):
    with pytest.raises(Interrupted):
        run(tmp_path, resume="auto", interrupt_at_batch=8, **{"checkpoint.every_steps": 3})   # after step 8
    assert saved_steps(tmp_path)[-2:] == [6, 8]
    shutil.rmtree(tmp_path / "checkpoints" / "8")   # lose the epoch-end one: resume mid-epoch 2 from 6
    results = run(tmp_path, resume="auto", **{"checkpoint.every_steps": 3})
    assert resumed_at(tmp_path) == [6]
    assert logged_steps(tmp_path) == logged_steps(reference[0])   # steps 7 and 8 redone, logged once
    assert_bit_identical(final_state(tmp_path), final_state(reference[0]))
    assert results["train_loss"] == reference[1]["train_loss"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")   # tensorstore's I/O thread
def test_resume_skips_a_corrupt_newest_checkpoint_with_a_warning(tmp_path, reference, caplog):
    with pytest.raises(Interrupted):
        run(tmp_path, interrupt_at_batch=10)
    assert saved_steps(tmp_path)[-1] == 8
    for path in (tmp_path / "checkpoints" / "8" / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(b"\0" * path.stat().st_size)
    run(tmp_path, resume="yes")
    assert f"{tmp_path}/checkpoints/8" in caplog.text and "skipping a damaged checkpoint" in caplog.text
    assert resumed_at(tmp_path) == [4]
    assert logged_steps(tmp_path) == EVERY_OTHER_STEP
    assert_bit_identical(final_state(tmp_path), final_state(reference[0]))


# ---- resuming with a changed config ------------------------------------------------------
@pytest.fixture
def half_run(tmp_path):
    """A run killed in epoch 2, after the epoch-1 checkpoint."""
    with pytest.raises(Interrupted):
        run(tmp_path, interrupt_at_batch=6)
    return tmp_path


@pytest.mark.parametrize("overrides, listed", [
    ({"batch_size": 16}, "batch_size: 8 -> 16"),
    ({"num_epochs": 5}, "num_epochs: 3 -> 5"),
    ({"optim.base_lr": 0.2, "seed": 3}, "optim.base_lr: 0.1 -> 0.2\n  seed: 0 -> 3"),
])
def test_a_resume_that_changes_the_trajectory_is_refused(half_run, overrides, listed):
    original = (half_run / "config.json").read_text()
    config = small_config(**{"num_epochs": NUM_EPOCHS, "steps_per_epoch": STEPS_PER_EPOCH, **overrides})
    with pytest.raises(ConfigChangeError, match="--allow_config_change") as refused:
        train_and_evaluate(config, half_run, resume="yes", experiment=make_experiment(config))
    assert listed in str(refused.value)
    assert (half_run / "config.json").read_text() == original
    assert saved_steps(half_run) == [4]


def test_harmless_changes_resume_and_every_resume_is_recorded(half_run, reference):
    original = (half_run / "config.json").read_text()
    run(half_run, resume="yes", log_every_steps=1, **{"checkpoint.keep": 3})
    assert (half_run / "config.json").read_text() == original
    history = [json.loads(line) for line in (half_run / config_changes.HISTORY_FILE).read_text().splitlines()]
    assert len(history) == 1
    assert history[0]["resumed_at_step"] == 4
    assert history[0]["changes"] == {"checkpoint.keep": [2, 3], "log_every_steps": [2, 1]}
    assert history[0]["config"]["log_every_steps"] == 1
    assert_bit_identical(final_state(half_run), final_state(reference[0]))


def test_a_deliberate_change_resumes_and_is_recorded(half_run):
    config = small_config(num_epochs=4, steps_per_epoch=STEPS_PER_EPOCH)
    results = train_and_evaluate(config, half_run, resume="yes", allow_config_change=True,
                                 experiment=make_experiment(config))
    assert results["step"] == 4 * STEPS_PER_EPOCH
    history = [json.loads(line) for line in (half_run / config_changes.HISTORY_FILE).read_text().splitlines()]
    assert history[-1]["changes"] == {"num_epochs": [NUM_EPOCHS, 4]}
    assert json.loads((half_run / "config.json").read_text())["num_epochs"] == NUM_EPOCHS


def test_config_changes_classify_keys():
    saved, current = config_of(), config_of(eval_batch_size=4, **{"dataset.data_dir": "/elsewhere",
                                                                   "model.time_steps": 3})
    changed = config_changes.changes(saved, current)
    assert set(changed) == {"eval_batch_size", "dataset.data_dir", "model.time_steps"}
    assert config_changes.trajectory_changes(changed) == {"model.time_steps": (2, 3)}
    # the initial values only matter before the first checkpoint: a resume replaces them
    assert config_changes.trajectory_changes({"model.init": ("imagenet", "imagenet_t6")}) == {}
    assert config_changes.changes({"a": {"b": 1}}, {"a": {"c": 1}}) == {"a.b": (1, "<absent>"),
                                                                     "a.c": ("<absent>", 1)}


# ---- the real network ----------------------------------------------------------------------
@pytest.fixture
def compilation_cache(tmp_path):
    """JAX's persistent compilation cache for one test: its runs compile the same steps once."""
    settings = {"jax_compilation_cache_dir": str(tmp_path / "jax_cache"),
                "jax_persistent_cache_min_compile_time_secs": 0.0,
                "jax_persistent_cache_min_entry_size_bytes": 0}
    previous = {name: getattr(jax.config, name) for name in settings}
    for name, value in settings.items():
        jax.config.update(name, value)
    yield
    for name, value in previous.items():
        jax.config.update(name, value)
    from jax._src import compilation_cache   # forget the directory, which pytest deletes

    compilation_cache.reset_cache()


def test_a_narrow_glif_resnet_killed_mid_epoch_resumes_bit_exactly(tmp_path, compilation_cache):
    """ResNet-18 (width 1/16: tdBN, GLIF on the compiled CPU kernel when it is built), T = 2,
    on a tiny .npz set: killed after step 5 (epoch 2), resumed from the mid-epoch checkpoint
    of step 4, it ends with the uninterrupted run's state, bit for bit."""
    import dataclasses

    from glif_jax.configs import base
    from glif_jax.train.experiment import build_experiment
    from glif_jax.train.validation import validate_config

    rng = np.random.default_rng(0)
    for split, size in (("train", 24), ("eval", 8)):
        np.savez(tmp_path / f"{split}.npz", x=rng.integers(0, 256, (size, 8, 8, 3), dtype=np.uint8),
                 y=rng.integers(0, 10, size), classes=np.arange(10))
    config = base.cifar_npz("resnet18", time_steps=2, num_epochs=2, model_overrides={"width_multiplier": 1 / 16},
                            train_path=str(tmp_path / "train.npz"), eval_path=str(tmp_path / "eval.npz"))
    with config.unlocked():
        config.update(dict(batch_size=4, eval_batch_size=8, steps_per_epoch=3, log_every_steps=1))
        config.checkpoint.every_steps = 2
        config.dataset.prefetch = 0
    experiment = build_experiment(config, validate_config(config))

    def killed_at(batch_index):
        served = [0]

        def train_batches(epoch):
            for batch in experiment.train_batches(epoch):
                if served[0] == batch_index:
                    raise Interrupted(f"simulated kill at batch {batch_index}")
                served[0] += 1
                yield batch
        return dataclasses.replace(experiment, train_batches=train_batches)

    train_and_evaluate(config, tmp_path / "reference", experiment=experiment)
    with pytest.raises(Interrupted):
        train_and_evaluate(config, tmp_path / "killed", experiment=killed_at(5))
    assert saved_steps(tmp_path / "killed")[-1] == 4
    train_and_evaluate(config, tmp_path / "killed", resume="auto", experiment=experiment)
    assert resumed_at(tmp_path / "killed") == [4]
    assert logged_steps(tmp_path / "killed") == logged_steps(tmp_path / "reference")

    def state_of(workdir):
        with Checkpointer(workdir / "checkpoints", read_only=True) as checkpointer:
            return checkpointer.restore(initial_state(config, experiment))[0]

    reference, resumed = state_of(tmp_path / "reference"), state_of(tmp_path / "killed")
    assert int(resumed.step) == 6
    assert resumed.batch_stats, "tdBN running statistics are part of the state"
    assert_bit_identical(resumed, reference)

"""glif_jax.checkpoint: exact save/restore, keep-N, best tracking, clear errors."""

from __future__ import annotations

import logging
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from glif_jax.checkpoint import CheckpointError, Checkpointer
from glif_jax.train.state import TrainState
from tests.comparison import assert_bit_identical


def make_state(seed: int) -> TrainState:
    """A train state with every kind of leaf: float params, stats, optax namedtuples, int step, key."""
    rng = np.random.default_rng(seed)
    params = {"conv": {"kernel": rng.normal(size=(3, 3, 2, 4)).astype(np.float32)},
              "glif": {"tau": rng.normal(size=(4,)).astype(np.float32)}}
    optimizer = optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(0.1, momentum=0.9))
    opt_state = optimizer.init(params)
    opt_state = jax.tree.map(lambda leaf: leaf + rng.normal(size=np.shape(leaf)).astype(np.float32), opt_state)
    return TrainState(
        step=jnp.asarray(seed * 10 + 3, jnp.int32),
        params=params,
        batch_stats={"bn": {"mean": rng.normal(size=(4,)).astype(np.float32),
                            "var": rng.random(4).astype(np.float32)}},
        opt_state=opt_state,
        rng=jax.random.PRNGKey(seed),
    )


@pytest.mark.parametrize("async_save", [True, False])
def test_restore_gives_exactly_the_saved_state(tmp_path, async_save):
    """Params, batch stats, optimizer state, step and RNG key come back bit for bit, with the
    state's own structure (TrainState, optax namedtuples), even right after an async save."""
    saved = make_state(1)
    with Checkpointer(tmp_path, async_save=async_save) as checkpointer:
        checkpointer.save(7, saved, {"epoch": 1, "eval_top1": 0.5})
        restored, meta = checkpointer.restore(make_state(2))  # a different state as the target
    assert isinstance(restored, TrainState)
    assert_bit_identical(restored, saved)
    assert meta == {"epoch": 1, "eval_top1": 0.5}


def test_restore_without_a_target_gives_the_saved_tree_as_nested_dicts(tmp_path):
    """target=None: the saved state as nested dicts (optax tuples as lists, empty states as
    None) of NumPy arrays, bit-identical to the saved leaves, for latest and best, by step."""
    saved = make_state(1)
    with Checkpointer(tmp_path, async_save=True) as checkpointer:
        checkpointer.save(7, saved, {"epoch": 1, "eval_top1": 0.5})
        checkpointer.save(8, make_state(2), {"epoch": 2, "eval_top1": 0.25})
        state, meta = checkpointer.restore()
        by_step, meta_by_step = checkpointer.restore(step=7)
        best, best_meta = checkpointer.restore(which="best")
    assert meta == {"epoch": 2, "eval_top1": 0.25}
    assert meta_by_step == best_meta == {"epoch": 1, "eval_top1": 0.5}
    assert_bit_identical(state["params"], make_state(2).params)
    for restored in (by_step, best):
        assert set(restored) == {"step", "params", "batch_stats", "opt_state", "rng"}
        assert type(restored["params"]) is dict and type(restored["params"]["conv"]) is dict
        for field in ("step", "params", "batch_stats", "rng"):
            assert_bit_identical(restored[field], getattr(saved, field))
        assert all(isinstance(leaf, np.ndarray) for leaf in jax.tree.leaves(restored))
        # optax.chain(add_decayed_weights, sgd(momentum)): (EmptyState, (TraceState, EmptyState))
        assert restored["opt_state"][0] is None and restored["opt_state"][1][1] is None
        assert_bit_identical(restored["opt_state"][1][0]["trace"], saved.opt_state[1][0].trace)
        assert restored["rng"].dtype == np.uint32 and restored["step"].shape == ()


def test_read_only_restore_is_quiet(tmp_path, caplog):
    """Reading a run (glif-eval, glif-plot) logs no orbax warnings about the read-only mode."""
    with Checkpointer(tmp_path, async_save=False) as checkpointer:
        checkpointer.save(3, make_state(3), {"eval_top1": 0.5})
    with caplog.at_level(logging.INFO):
        with Checkpointer(tmp_path, read_only=True) as reader:
            state, _ = reader.restore(which="best")
    assert_bit_identical(state["params"], make_state(3).params)
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []


def test_keeps_the_newest_n_and_the_best(tmp_path):
    """keep=2 keeps the two newest checkpoints plus the best (highest eval_top1); a reopened
    Checkpointer finds the best again from the saved metas."""
    top1_by_step = {1: 0.3, 2: 0.7, 3: 0.5, 4: 0.6}
    with Checkpointer(tmp_path, keep=2) as checkpointer:
        became_best = [checkpointer.save(step, make_state(step), {"eval_top1": top1})
                       for step, top1 in top1_by_step.items()]
        checkpointer.wait()
        assert became_best == [True, True, False, False]
        assert checkpointer.all_steps() == [2, 3, 4]
        assert checkpointer.best_step() == 2
        best, meta = checkpointer.restore(make_state(0), which="best")
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.isdigit()) == ["2", "3", "4"]
    assert_bit_identical(best, make_state(2))
    assert meta["eval_top1"] == 0.7
    with Checkpointer(tmp_path, keep=2) as reopened:
        assert reopened.best_value == pytest.approx(0.7)
        assert reopened.latest_step() == 4
        assert not reopened.save(5, make_state(5), {"eval_top1": 0.65})
        reopened.wait()
        assert reopened.best_step() == 2
        assert reopened.all_steps() == [2, 4, 5]


def test_checkpoints_without_the_metric_are_never_the_best(tmp_path):
    """Mid-epoch checkpoints (no eval metric) and non-finite metrics never become the best."""
    with Checkpointer(tmp_path, keep=1) as checkpointer:
        assert checkpointer.save(1, make_state(1), {"eval_top1": 0.2})
        assert not checkpointer.save(2, make_state(2), {"epoch": 1})
        assert not checkpointer.save(3, make_state(3), {"eval_top1": float("nan")})
        checkpointer.wait()
        assert checkpointer.best_step() == 1
        assert checkpointer.all_steps() == [1, 3]


def test_missing_checkpoints_raise_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        Checkpointer(tmp_path / "nowhere", read_only=True)
    with Checkpointer(tmp_path) as checkpointer:
        with pytest.raises(CheckpointError, match=r"no latest checkpoint in "):
            checkpointer.restore(make_state(0))
        checkpointer.save(3, make_state(3), {})
        with pytest.raises(CheckpointError, match=r"step 9 .*available steps: \[3\]"):
            checkpointer.restore(make_state(0), step=9)
        with pytest.raises(CheckpointError, match="no best checkpoint .*no checkpoint has 'eval_top1'"):
            checkpointer.restore(make_state(0), which="best")


def test_an_earlier_layout_is_refused_with_a_clear_error(tmp_path):
    (tmp_path / "latest" / "4").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="earlier glif-jax .*latest/ and best/"):
        Checkpointer(tmp_path)


def save_steps(directory, steps, **options):
    with Checkpointer(directory, async_save=False, **options) as checkpointer:
        for step in steps:
            checkpointer.save(step, make_state(step), {"epoch": step, "eval_top1": step / 10})


def largest_array_file(step_dir):
    return max((path for path in (step_dir / "state").rglob("*") if path.is_file() and path.parent.name == "d"),
               key=lambda path: path.stat().st_size)


def flip_byte(path, offset=None):
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_bits_in_the_arrays_are_caught_by_the_checksums(tmp_path, caplog):
    """One flipped bit inside the compressed array data decodes to wrong numbers that orbax
    itself does not notice; the checksums taken at save time do: the damaged checkpoint is
    named in a warning and the previous one restored instead."""
    big = {"weights": np.random.default_rng(0).normal(size=(64, 1024)).astype(np.float32)}
    with Checkpointer(tmp_path, async_save=False) as checkpointer:
        checkpointer.save(1, {"weights": big["weights"] + 1}, {})
        checkpointer.save(2, big, {})
    flip_byte(largest_array_file(tmp_path / "2"))
    with Checkpointer(tmp_path) as checkpointer:
        with pytest.raises(CheckpointError, match=r"checkpoint at .*/2 is corrupt: 1 array.* \(weights\)"):
            checkpointer.restore(step=2)
        with caplog.at_level(logging.WARNING):
            restored, _ = checkpointer.restore()
    np.testing.assert_array_equal(restored["weights"], big["weights"] + 1)
    assert any("skipping a damaged checkpoint" in record.getMessage() and f"{tmp_path}/2" in record.getMessage()
               for record in caplog.records)


# tensorstore may report a garbage file once more from its I/O thread after the error: noise
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", ["garbage array files", "deleted state", "damaged meta", "missing checksums"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog, damage):
    """Whatever is wrong with the newest checkpoint, latest and best restore the newest (best)
    intact one with a warning naming the damaged one; asking for that step raises."""
    save_steps(tmp_path, [5, 6])
    step_dir = tmp_path / "6"
    if damage == "garbage array files":
        for path in (step_dir / "state").rglob("*"):
            if path.is_file() and "manifest" not in path.name and not path.name.startswith("_"):
                path.write_bytes(b"garbage")
    elif damage == "deleted state":
        shutil.rmtree(step_dir / "state")
    elif damage == "damaged meta":
        meta_file = next(path for path in (step_dir / "meta").rglob("*") if path.is_file() and "metadata" in path.name)
        meta_file.write_text('{"epoch": 6, "eval_t')
    else:
        shutil.rmtree(step_dir / "checksums")
    with caplog.at_level(logging.WARNING):
        with Checkpointer(tmp_path) as checkpointer:   # opening never fails on a damaged step
            latest, meta = checkpointer.restore(make_state(0))
            best, best_meta = checkpointer.restore(make_state(0), which="best")
            with pytest.raises(CheckpointError, match=f"{tmp_path}/6"):
                checkpointer.restore(make_state(0), step=6)
    assert_bit_identical(latest, make_state(5))
    assert_bit_identical(best, make_state(5))
    assert meta == best_meta == {"epoch": 5, "eval_top1": 0.5}
    assert any(f"{tmp_path}/6" in record.getMessage() for record in caplog.records if record.levelno == logging.WARNING)


def test_no_intact_checkpoint_lists_every_failure(tmp_path):
    save_steps(tmp_path, [1, 2])
    for step in (1, 2):
        shutil.rmtree(tmp_path / str(step) / "state")
    with Checkpointer(tmp_path) as checkpointer:
        with pytest.raises(CheckpointError, match=r"no intact latest checkpoint(.|\n)*/2(.|\n)*/1"):
            checkpointer.restore(make_state(0))


def test_checkpoint_of_another_model_raises_a_clear_error(tmp_path):
    with Checkpointer(tmp_path, async_save=False) as checkpointer:
        checkpointer.save(5, make_state(5), {})
        other = make_state(0)
        other = other.replace(params={**other.params, "conv": {"kernel": np.zeros((3, 3, 2, 8), np.float32)}})
        with pytest.raises(CheckpointError, match=f"{tmp_path}/5"):
            checkpointer.restore(other)


@pytest.fixture
def held_back_cleanup(monkeypatch):
    """orbax removes a killed save's temporary directories in a background thread; here each
    removal waits until someone waits for its thread (joins it), so a Checkpointer that
    returns without waiting returns, every time, with the leftovers still on disk.
    Yields {thread: its release event} of every removal held back."""
    import threading

    from orbax.checkpoint._src.path import temporary_paths

    lock, releases, joined = threading.Lock(), {}, set()
    cleanup, join = temporary_paths.cleanup_temporary_paths, threading.Thread.join

    async def held_cleanup(*args, **kwargs):
        with lock:
            release = releases.setdefault(threading.current_thread(), threading.Event())
            if threading.current_thread() in joined:
                release.set()
        release.wait(timeout=120)   # a safety net against a hang, never reached when the wait works
        await cleanup(*args, **kwargs)

    def joining(thread, timeout=None):
        with lock:
            joined.add(thread)
            if thread in releases:
                releases[thread].set()
        return join(thread, timeout)

    monkeypatch.setattr(temporary_paths, "cleanup_temporary_paths", held_cleanup)
    monkeypatch.setattr(threading.Thread, "join", joining)
    yield releases
    for release in list(releases.values()):   # let a held removal finish (without the wait, the test failed)
        release.set()


def test_opening_for_writing_removes_a_killed_saves_leftovers_before_it_returns(tmp_path, held_back_cleanup):
    save_steps(tmp_path, [1])
    leftover = tmp_path / "2.orbax-checkpoint-tmp"   # what a save killed mid-write leaves
    (leftover / "state").mkdir(parents=True)
    (leftover / "state" / "partial").write_bytes(b"0" * 64)
    with Checkpointer(tmp_path, read_only=True) as reader:   # a reader never deletes
        assert reader.all_steps() == [1]
    assert leftover.is_dir()
    held_before = len(held_back_cleanup)
    with Checkpointer(tmp_path) as checkpointer:
        assert len(held_back_cleanup) == held_before + 1   # its removal was held back until waited for
        assert not leftover.exists()   # removed before the constructor returned
        assert checkpointer.all_steps() == [1]


KILLED_SAVER = """
import os, sys
import numpy as np
from glif_jax.checkpoint import Checkpointer
checkpointer = Checkpointer(sys.argv[1], keep=1, async_save=True)
for step in (1, 2):
    checkpointer.save(step, {"weights": np.full((1024, 1024), float(step), np.float32)}, {})
    if step == 1:
        checkpointer.wait()
os.kill(os.getpid(), 9)   # while the asynchronous write of step 2 is in flight
"""


def test_a_kill_during_an_asynchronous_save_keeps_the_previous_checkpoint(tmp_path):
    """keep=1 and SIGKILL while the next checkpoint is being written (checked: its temporary
    directory is on disk after the kill; tried again the rare time the write finished first):
    the previous one is only deleted once a newer one is complete, so it survives, and the
    half-written step is not listed (its temporary directory is removed when the directory is
    opened for writing)."""
    import subprocess
    import sys

    for attempt in range(3):
        directory = tmp_path / str(attempt)
        killed = subprocess.run([sys.executable, "-c", KILLED_SAVER, str(directory)],
                                capture_output=True, text=True, timeout=120)
        assert killed.returncode == -9, killed.stderr
        leftovers = [path.name for path in directory.iterdir() if "tmp" in path.name]
        if leftovers:
            break
    else:
        pytest.fail("in 3 tries the kill never landed while the checkpoint was being written")
    assert leftovers[0].startswith("2.")
    with Checkpointer(directory) as checkpointer:
        state, _ = checkpointer.restore()
        assert checkpointer.all_steps() == [1]
    assert_bit_identical(state["weights"], np.full((1024, 1024), 1.0, np.float32))
    assert not [path for path in directory.iterdir() if "tmp" in path.name]

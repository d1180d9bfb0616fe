"""glif_jax.checkpoint: exact save/restore, keep-N, best tracking, clear errors."""

from __future__ import annotations

import logging
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from glif_jax.checkpoint import CheckpointError, Checkpointer, load_config, save_config
from train.state import TrainState
from tests.train_standins import small_config


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


def assert_identical(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        got, want = np.asarray(got), np.asarray(want)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("async_save", [True, False])
def test_restore_gives_exactly_the_saved_state(tmp_path, async_save):
    """Params, batch stats, optimizer state, step and RNG key come back bit for bit, with the
    state's own structure (TrainState, optax namedtuples), even right after an async save."""
    saved = make_state(1)
    with Checkpointer(tmp_path, async_save=async_save) as checkpointer:
        checkpointer.save(7, saved, {"epoch": 1, "eval_top1": 0.5})
        restored, meta = checkpointer.restore(make_state(2))  # a different state as the target
    assert isinstance(restored, TrainState)
    assert_identical(restored, saved)
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
    assert_identical(state["params"], make_state(2).params)
    for restored in (by_step, best):
        assert set(restored) == {"step", "params", "batch_stats", "opt_state", "rng"}
        assert type(restored["params"]) is dict and type(restored["params"]["conv"]) is dict
        for field in ("step", "params", "batch_stats", "rng"):
            assert_identical(restored[field], getattr(saved, field))
        assert all(isinstance(leaf, np.ndarray) for leaf in jax.tree.leaves(restored))
        # optax.chain(add_decayed_weights, sgd(momentum)): (EmptyState, (TraceState, EmptyState))
        assert restored["opt_state"][0] is None and restored["opt_state"][1][1] is None
        assert_identical(restored["opt_state"][1][0]["trace"], saved.opt_state[1][0].trace)
        assert restored["rng"].dtype == np.uint32 and restored["step"].shape == ()


def test_read_only_restore_is_quiet(tmp_path, caplog):
    """Reading a run (glif-eval, glif-plot) logs no orbax warnings about the read-only mode."""
    with Checkpointer(tmp_path, async_save=False) as checkpointer:
        checkpointer.save(3, make_state(3), {"eval_top1": 0.5})
    with caplog.at_level(logging.INFO):
        with Checkpointer(tmp_path, read_only=True) as reader:
            state, _ = reader.restore(which="best")
    assert_identical(state["params"], make_state(3).params)
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []


def test_keeps_the_last_n_and_the_best(tmp_path):
    """keep=2 keeps the two newest periodic checkpoints; the best (highest eval_top1) survives
    in its own directory, and a reopened Checkpointer remembers the best value."""
    top1_by_step = {1: 0.3, 2: 0.7, 3: 0.5, 4: 0.6}
    with Checkpointer(tmp_path, keep=2) as checkpointer:
        became_best = [checkpointer.save(step, make_state(step), {"eval_top1": top1})
                       for step, top1 in top1_by_step.items()]
        assert became_best == [True, True, False, False]
        assert checkpointer.all_steps() == [3, 4]
        assert checkpointer.best_step() == 2
        best, meta = checkpointer.restore(make_state(0), which="best")
    assert_identical(best, make_state(2))
    assert meta["eval_top1"] == 0.7
    with Checkpointer(tmp_path, keep=2) as reopened:
        assert reopened.best_value == pytest.approx(0.7)
        assert reopened.latest_step() == 4
        assert not reopened.save(5, make_state(5), {"eval_top1": 0.65})
        assert reopened.best_step() == 2


def test_missing_checkpoints_raise_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        Checkpointer(tmp_path / "nowhere", read_only=True)
    with Checkpointer(tmp_path) as checkpointer:
        with pytest.raises(CheckpointError, match=r"no latest checkpoint in .*latest"):
            checkpointer.restore(make_state(0))
        checkpointer.save(3, make_state(3), {})
        with pytest.raises(CheckpointError, match=r"step 9 .*available steps: \[3\]"):
            checkpointer.restore(make_state(0), step=9)
        with pytest.raises(CheckpointError, match="no best checkpoint"):
            checkpointer.restore(make_state(0), which="best")


def test_corrupt_checkpoint_raises_a_clear_error(tmp_path):
    """Damaged array files are reported with the checkpoint's path, not an orbax traceback."""
    with Checkpointer(tmp_path, async_save=False) as checkpointer:
        checkpointer.save(5, make_state(5), {})
    state_dir = tmp_path / "latest" / "5" / "state"
    for path in state_dir.rglob("*"):
        if path.is_file() and "manifest" not in path.name and not path.name.startswith("_"):
            path.write_bytes(b"garbage")
    with Checkpointer(tmp_path) as checkpointer:
        with pytest.raises(CheckpointError, match=r"cannot restore the checkpoint at .*latest/5"):
            checkpointer.restore(make_state(0))
        with pytest.raises(CheckpointError, match=r"cannot restore the checkpoint at .*latest/5"):
            checkpointer.restore()  # also without a target


def test_deleted_state_raises_a_clear_error(tmp_path):
    with Checkpointer(tmp_path, async_save=False) as checkpointer:
        checkpointer.save(5, make_state(5), {})
    shutil.rmtree(tmp_path / "latest" / "5" / "state")
    with Checkpointer(tmp_path) as checkpointer:
        with pytest.raises(CheckpointError, match=r"latest/5"):
            checkpointer.restore(make_state(0))


def test_checkpoint_of_another_model_raises_a_clear_error(tmp_path):
    with Checkpointer(tmp_path, async_save=False) as checkpointer:
        checkpointer.save(5, make_state(5), {})
        other = make_state(0)
        other = other.replace(params={**other.params, "conv": {"kernel": np.zeros((3, 3, 2, 8), np.float32)}})
        with pytest.raises(CheckpointError, match="latest/5"):
            checkpointer.restore(other)


def test_config_round_trip(tmp_path):
    config = small_config(num_epochs=7)
    save_config(tmp_path, config)
    loaded = load_config(tmp_path)
    assert loaded.to_json(sort_keys=True) == config.to_json(sort_keys=True)
    with pytest.raises(AttributeError):
        loaded.no_such_key = 1  # locked like the original
    with pytest.raises(CheckpointError, match="no config.json"):
        load_config(tmp_path / "elsewhere")

"""glif_jax.parallel: a data-parallel step over N devices equals the one-device step.

JAX fixes its device count at import, so the multi-device checks run in a subprocess
(`python -m tests.test_parallel`) with XLA_FLAGS=--xla_force_host_platform_device_count=4;
the rest of the suite stays single-device. The subprocess trains two steps of a model with
batch normalisation (a flax BatchNorm stand-in, and the real tiny_convnet with tdBN and
GLIF neurons) on 8-example batches three ways — one device on the whole batch,
`pmap` over 4 devices (2 examples each, statistics averaged over the axis), `jit` over a
4-device mesh — and reports the largest differences; a pmap run whose model does NOT
average its statistics is the negative control (it must differ).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DEVICES = 4
TOLERANCE = 2e-5  # float32 reassociation of sums over 4 shards


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES}", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-m", "tests.test_parallel"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


MODELS = ["standin", "tiny_convnet"]


@pytest.mark.parametrize("model", MODELS)
def test_subprocess_sees_the_simulated_devices(report, model):
    assert report["device_count"] == DEVICES
    assert report[model]["mesh_batch_devices"] == DEVICES  # the batch really is split over 4 devices
    assert report[model]["pmap_leading_axis"] == DEVICES


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("strategy", ["pmap", "mesh"])
def test_data_parallel_train_steps_equal_the_single_device_steps(report, model, strategy):
    """Params, batch statistics, optimizer state and metric sums after two steps."""
    for part, difference in report[model][strategy]["train"].items():
        assert difference <= TOLERANCE, (model, strategy, part, difference)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("strategy", ["pmap", "mesh"])
def test_data_parallel_eval_equals_the_single_device_eval(report, model, strategy):
    assert {"loss", "top1", "top5", "count"} <= set(report[model][strategy]["eval"])
    for name, difference in report[model][strategy]["eval"].items():
        assert difference <= TOLERANCE, (model, strategy, name, difference)


@pytest.mark.parametrize("model", MODELS)
def test_without_averaged_statistics_pmap_differs(report, model):
    """Negative control: per-device batch statistics change the result, so the equality
    above really depends on the statistics being averaged over the device axis."""
    assert report[model]["pmap_without_bn_axis"]["train"]["batch_stats"] > 100 * TOLERANCE


@pytest.mark.parametrize("strategy", ["pmap", "mesh"])
def test_training_loop_under_each_strategy_matches_one_device(report, strategy):
    """train_and_evaluate end to end (placement, checkpointing from devices, padded eval)."""
    assert report["loop"][strategy]["state"] <= TOLERANCE
    assert report["loop"][strategy]["results"] <= TOLERANCE


def test_per_process_batch_and_pmap_sharding_helpers():
    from glif_jax import parallel

    assert parallel.per_process_batch_size(64) == 64  # one process here
    sharded = parallel.shard_for_pmap({"image": np.zeros((8, 3)), "label": np.arange(8)}, 4)
    assert sharded["image"].shape == (4, 2, 3)
    np.testing.assert_array_equal(sharded["label"][1], [2, 3])
    with pytest.raises(ValueError, match="cannot be split evenly over 4"):
        parallel.shard_for_pmap({"label": np.arange(6)}, 4)
    with pytest.raises(ValueError, match=r"^parallel: expected one of \('none', 'pmap', 'mesh'\), got"):
        parallel.make_strategy("ddp")


# ---- the subprocess --------------------------------------------------------------------
def _max_difference(actual, expected) -> float:
    """Largest absolute difference over two pytrees of the same structure; raises (and so
    fails the subprocess) on a NaN or infinity, a shape change or a structure change."""
    from tests.comparison import absolute_difference, tree_difference

    return tree_difference(actual, expected, absolute_difference)


def _run_strategy(strategy, model, optimizer, host_state, batches, eval_batch):
    from glif_jax.train import steps

    train_fn = strategy.compile(functools.partial(steps.train_step, model=model, optimizer=optimizer,
                                                  collectives=strategy.collectives), donate_state=True)
    eval_fn = strategy.compile(functools.partial(steps.eval_step, model=model, collectives=strategy.collectives))
    state = strategy.put_state(host_state)
    sums = []
    for batch in batches:
        state, step_sums = train_fn(state, strategy.put_batch(batch))
        sums.append(step_sums)
    evaluation = eval_fn(state, strategy.put_batch(eval_batch))
    return state, strategy.fetch(state), strategy.fetch(sums), strategy.fetch(evaluation)


def _compare(result, reference) -> dict:
    _, state, sums, evaluation = result
    _, ref_state, ref_sums, ref_evaluation = reference
    return {
        "train": {
            "params": _max_difference(state.params, ref_state.params),
            "batch_stats": _max_difference(state.batch_stats, ref_state.batch_stats),
            "opt_state": _max_difference(state.opt_state, ref_state.opt_state),
            "step": _max_difference(state.step, ref_state.step),
            "metric_sums": _max_difference(sums, ref_sums),
        },
        "eval": _per_metric_difference(evaluation, ref_evaluation),
    }


def _per_metric_difference(metrics, reference) -> dict:
    """``{name: difference}`` of two dicts of metric sums, which must have the same names."""
    assert sorted(metrics) == sorted(reference), (sorted(metrics), sorted(reference))
    return {name: _max_difference(metrics[name], reference[name]) for name in reference}


def _compare_strategies(make_model, input_shape, images, labels, optimizer) -> dict:
    """Two train steps and one eval per strategy; differences to the one-device run."""
    import jax

    from glif_jax import parallel
    from glif_jax.train.state import create_train_state

    batches = [{"image": images[:8], "label": labels[:8]}, {"image": images[8:16], "label": labels[8:16]}]
    eval_batch = {"image": images[:8], "label": labels[:8], "mask": np.array([1] * 6 + [0] * 2, np.float32)}
    host_state = jax.device_get(create_train_state(make_model(None), optimizer, rng=jax.random.PRNGKey(0),
                                                   input_shape=input_shape))

    def run(strategy, bn_axis_name):
        return _run_strategy(strategy, make_model(bn_axis_name), optimizer, host_state, batches, eval_batch)

    single = run(parallel.SingleDevice(), None)
    pmap_strategy, mesh_strategy = parallel.PmapDataParallel(), parallel.MeshDataParallel()
    pmapped = run(pmap_strategy, pmap_strategy.bn_axis_name)
    meshed = run(mesh_strategy, mesh_strategy.bn_axis_name)
    unsynced = run(parallel.PmapDataParallel(), None)
    return {
        "mesh_batch_devices": len(mesh_strategy.put_batch(batches[0])["image"].sharding.device_set),
        "pmap_leading_axis": int(jax.tree.leaves(pmapped[0].params)[0].shape[0]),
        "pmap": _compare(pmapped, single),
        "mesh": _compare(meshed, single),
        "pmap_without_bn_axis": _compare(unsynced, single),
    }


def _compare_loops() -> dict:
    """``train_and_evaluate`` under each strategy (2 steps, checkpoint, padded eval): the
    final checkpoint and metrics against the one-device run."""
    import tempfile

    from glif_jax import parallel
    from glif_jax.checkpoint import Checkpointer
    from glif_jax.train.train import initial_state, train_and_evaluate
    from tests.train_standins import make_experiment, small_config

    finals = {}
    with tempfile.TemporaryDirectory() as root:
        for name in ("none", "pmap", "mesh"):
            config = small_config(parallel=name, num_epochs=1, steps_per_epoch=2)
            axis = parallel.make_strategy(name).bn_axis_name
            results = train_and_evaluate(config, f"{root}/{name}", experiment=make_experiment(config, bn_axis_name=axis))
            with Checkpointer(f"{root}/{name}/checkpoints", read_only=True) as checkpointer:
                state, _ = checkpointer.restore(initial_state(config, make_experiment(config)))
            finals[name] = (state, results)
    reference_state, reference_results = finals["none"]

    def without_speeds(results):   # wall-clock speeds differ
        return {key: value for key, value in results.items() if not key.endswith("images_per_second")}

    return {
        name: {
            "state": _max_difference(state, reference_state),
            "results": _max_difference(without_speeds(results), without_speeds(reference_results)),
        }
        for name, (state, results) in finals.items() if name != "none"
    }


def main() -> None:
    """Prints one JSON line: per model ("standin": flax BatchNorm; "tiny_convnet": the real
    GLIF network with tdBN), the differences of each strategy to the one-device run."""
    import jax
    import optax

    from glif_jax import models
    from tests.train_standins import IMAGE_SHAPE, TinyBatchNormNet, dataset

    optimizer = optax.sgd(0.5, momentum=0.9)
    images, labels = dataset(5, 16)
    report = {"device_count": jax.device_count()}
    report["standin"] = _compare_strategies(
        lambda axis: TinyBatchNormNet(bn_axis_name=axis), IMAGE_SHAPE, images, labels, optimizer)
    rng = np.random.default_rng(6)
    digits = rng.normal(size=(16, 8, 8, 1)).astype(np.float32)
    digit_labels = rng.integers(0, 10, 16).astype(np.int32)
    report["tiny_convnet"] = _compare_strategies(
        lambda axis: models.get_model("tiny_convnet", num_classes=10, time_steps=2, bn_axis_name=axis),
        (8, 8, 1), digits, digit_labels, optimizer)
    report["loop"] = _compare_loops()
    print(json.dumps(report))


if __name__ == "__main__":
    main()


def test_collectives_reduce_over_the_axis_and_local_ones_do_nothing():
    """The step's only cross-device operations: pmap's average, sum and all-true over the
    named axis (checked under vmap with the same name), and the identity for one device or a mesh."""
    import jax
    import jax.numpy as jnp

    from glif_jax import parallel

    values = jnp.array([1.0, 2.0, 6.0])
    flags = jnp.array([True, False, True])
    axis = parallel.AxisCollectives("d")
    mean, total, everywhere = jax.vmap(lambda v, f: (axis.mean(v), axis.sum(v), axis.all(f)), axis_name="d")(
        values, flags)
    np.testing.assert_array_equal(mean, [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(total, [9.0, 9.0, 9.0])
    np.testing.assert_array_equal(everywhere, [False, False, False])
    assert bool(jax.vmap(axis.all, axis_name="d")(jnp.array([True, True])).all())
    tree = {"a": values}
    assert parallel.LOCAL.mean(tree) is tree and parallel.LOCAL.sum(tree) is tree
    assert parallel.make_strategy("mesh").collectives is parallel.LOCAL
    assert isinstance(parallel.make_strategy("pmap").collectives, parallel.AxisCollectives)

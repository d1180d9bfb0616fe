"""tdBN against a NumPy reference written from the paper's tdBN and time-merging conventions.

    y = k · V · (x − mean) / sqrt(var + eps) · w + b,   V = 0.5, eps = 1e-5,
    statistics per channel over time × batch × space; running statistics with factor 0.1,
    running variance unbiased; train mode uses batch statistics, eval mode running ones.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glif_jax.layers import RESIDUAL_BRANCH_SCALE, TDBN_THRESHOLD, TdBatchNorm, plain_batch_norm
from glif_jax.neuron import PARAM_NAMES

SHAPE = (3, 4, 5, 5, 6)  # [T, B, H, W, C]
EPS = 1e-5


def reference_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel mean, biased variance and unbiased variance over every axis but the last."""
    flat = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    return flat.mean(0), flat.var(0), flat.var(0, ddof=1)


def reference_tdbn(x, mean, var, k, scale, bias, threshold=0.5):
    return k * threshold * (np.asarray(x, np.float64) - mean) / np.sqrt(var + EPS) * scale + bias


def random_input(seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * rng.uniform(0.5, 3, size=shape[-1]) + rng.normal(size=shape[-1])).astype(np.float32)


def init_with(module, x, seed=1):
    """Variables with random scale/bias so that w and b enter the check."""
    variables = module.init(jax.random.key(0), x, use_running_average=False)
    rng = np.random.default_rng(seed)
    channels = x.shape[-1]
    params = {"scale": jnp.asarray(rng.uniform(0.5, 2, channels), jnp.float32),
              "bias": jnp.asarray(rng.normal(size=channels), jnp.float32)}
    return {"params": params, "batch_stats": variables["batch_stats"]}


@pytest.mark.parametrize("k", [1.0, RESIDUAL_BRANCH_SCALE])
def test_train_mode_normalises_with_batch_statistics_over_time_batch_space(k):
    """The paper's tdBN and time-merging conventions: per-channel statistics over T, B, H, W together, scaled by k·V·w, shifted by b."""
    x = random_input()
    module = TdBatchNorm(k=k)
    variables = init_with(module, x)
    y, _ = module.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    mean, var, _ = reference_statistics(x)
    expected = reference_tdbn(x, mean, var, k, np.asarray(variables["params"]["scale"]),
                              np.asarray(variables["params"]["bias"]))
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-5)


def test_statistics_are_not_per_time_step():
    """The paper's tdBN and time-merging conventions: one mean per channel over time too — time steps with different offsets are not
    each centred (a per-step BN would make every step's mean zero)."""
    x = random_input()
    x[0] += 20.0
    module = TdBatchNorm()
    variables = module.init(jax.random.key(0), x, use_running_average=False)
    y, _ = module.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    per_step_mean = np.asarray(y).reshape(SHAPE[0], -1, SHAPE[-1]).mean(1)
    assert np.all(per_step_mean[0] > 0.5) and np.all(per_step_mean[1:] < 0)


def test_running_statistics_follow_pytorch_convention():
    """The paper's tdBN and time-merging conventions: running = 0.9·running + 0.1·batch, from (mean 0, var 1), variance unbiased."""
    module = TdBatchNorm()
    batches = [random_input(seed) for seed in range(3)]
    variables = module.init(jax.random.key(0), batches[0], use_running_average=False)
    running_mean, running_var = np.zeros(SHAPE[-1]), np.ones(SHAPE[-1])
    for x in batches:
        _, updates = module.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
        variables = {**variables, **updates}
        mean, _, unbiased_var = reference_statistics(x)
        running_mean = 0.9 * running_mean + 0.1 * mean
        running_var = 0.9 * running_var + 0.1 * unbiased_var
        np.testing.assert_allclose(np.asarray(variables["batch_stats"]["mean"]), running_mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(variables["batch_stats"]["var"]), running_var, rtol=1e-5, atol=1e-6)


def test_init_leaves_running_statistics_at_zero_mean_unit_variance():
    """The paper's tdBN and time-merging conventions (PyTorch convention): creating the model does not count as a training batch."""
    variables = TdBatchNorm().init(jax.random.key(0), random_input() + 3.0, use_running_average=False)
    np.testing.assert_array_equal(variables["batch_stats"]["mean"], np.zeros(SHAPE[-1]))
    np.testing.assert_array_equal(variables["batch_stats"]["var"], np.ones(SHAPE[-1]))
    np.testing.assert_array_equal(variables["params"]["scale"], np.ones(SHAPE[-1]))
    np.testing.assert_array_equal(variables["params"]["bias"], np.zeros(SHAPE[-1]))


def test_eval_mode_uses_running_statistics_and_does_not_update_them():
    """The paper's tdBN and time-merging conventions: eval mode normalises with the running mean and variance."""
    x = random_input()
    module = TdBatchNorm(k=RESIDUAL_BRANCH_SCALE)
    variables = init_with(module, x)
    rng = np.random.default_rng(5)
    stats = {"mean": rng.normal(size=SHAPE[-1]), "var": rng.uniform(0.5, 2.0, SHAPE[-1])}
    variables["batch_stats"] = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), stats)
    y, updates = module.apply(variables, x, use_running_average=True, mutable=["batch_stats"])
    expected = reference_tdbn(x, stats["mean"], stats["var"], RESIDUAL_BRANCH_SCALE,
                              np.asarray(variables["params"]["scale"]), np.asarray(variables["params"]["bias"]))
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(updates["batch_stats"]["mean"]), stats["mean"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(updates["batch_stats"]["var"]), stats["var"], rtol=1e-6)


def test_train_output_std_is_k_times_v():
    """The paper's tdBN and time-merging conventions: with w = 1, b = 0 the train-mode output has std k·V per channel."""
    x = random_input()
    for k in (1.0, RESIDUAL_BRANCH_SCALE):
        module = TdBatchNorm(k=k)
        variables = module.init(jax.random.key(0), x, use_running_average=False)
        y, _ = module.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
        std = np.asarray(y).reshape(-1, SHAPE[-1]).std(0)
        np.testing.assert_allclose(std, k * TDBN_THRESHOLD, rtol=1e-3)


def test_plain_batch_norm_has_unit_scale():
    """The paper's architectures (7B-wideNet's plain BatchNorm): k·V = 1, so the train output has unit std."""
    x = random_input()
    module = plain_batch_norm()
    variables = module.init(jax.random.key(0), x, use_running_average=False)
    y, _ = module.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    np.testing.assert_allclose(np.asarray(y).reshape(-1, SHAPE[-1]).std(0), 1.0, rtol=1e-3)


def test_axis_name_averages_statistics_across_devices():
    """Data parallel (the paper's tdBN and time-merging conventions statistics over the whole batch): with ``axis_name`` every shard
    normalises with the global batch statistics and tracks the global running statistics
    (unbiased with the global count); without it the shards silently disagree."""
    devices = 2
    x = random_input(seed=3, shape=(2, 4, 3, 3, 5))          # the global batch [T, B, H, W, C]
    shards = np.stack(np.split(x, devices, axis=1))            # [devices, T, B/devices, H, W, C]
    single = TdBatchNorm()
    variables = single.init(jax.random.key(0), x, use_running_average=False)
    expected_y, expected_stats = single.apply(variables, x, use_running_average=False, mutable=["batch_stats"])

    def per_device(module):
        apply = lambda shard: module.apply(variables, shard, use_running_average=False, mutable=["batch_stats"])
        return jax.vmap(apply, axis_name="data")(shards)

    y, stats = per_device(TdBatchNorm(axis_name="data"))
    np.testing.assert_allclose(np.concatenate(list(np.asarray(y)), axis=1), np.asarray(expected_y), rtol=1e-5, atol=1e-5)
    for name in ("mean", "var"):
        for device in range(devices):
            np.testing.assert_allclose(np.asarray(stats["batch_stats"][name][device]),
                                       np.asarray(expected_stats["batch_stats"][name]), rtol=1e-5, atol=1e-7)
    _, local_stats = per_device(TdBatchNorm())
    assert not np.allclose(local_stats["batch_stats"]["mean"][0], local_stats["batch_stats"]["mean"][1])


def test_bfloat16_compute_keeps_float32_statistics_and_parameters():
    """Mixed precision: output in the compute dtype, statistics and parameters float32."""
    x = random_input()
    module = TdBatchNorm(dtype=jnp.bfloat16)
    variables = module.init(jax.random.key(0), x, use_running_average=False)
    y, updates = module.apply(variables, jnp.asarray(x, jnp.bfloat16), use_running_average=False,
                              mutable=["batch_stats"])
    assert y.dtype == jnp.bfloat16
    assert variables["params"]["scale"].dtype == jnp.float32
    assert updates["batch_stats"]["var"].dtype == jnp.float32
    mean, var, _ = reference_statistics(np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32))
    expected = reference_tdbn(np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32), mean, var, 1.0, 1.0, 0.0)
    np.testing.assert_allclose(np.asarray(y, np.float32), expected, atol=2e-2)


def test_parameter_names_are_not_neuron_names():
    """The optimiser groups parameters by leaf name (the paper's training recipe): BN leaves must be weights."""
    variables = TdBatchNorm().init(jax.random.key(0), random_input(), use_running_average=False)
    assert set(variables["params"]) == {"scale", "bias"}
    assert not set(variables["params"]) & set(PARAM_NAMES)


def test_missing_channel_axis_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\[\.\.\., C\]"):
        TdBatchNorm().init(jax.random.key(0), jnp.ones((4,)), use_running_average=False)


def test_residual_branch_scale_is_one_over_root_two():
    assert math.isclose(RESIDUAL_BRANCH_SCALE * math.sqrt(2), 1.0)
    assert TDBN_THRESHOLD == 0.5

"""Time merged into batch for stateless layers (the paper's tdBN and time-merging conventions: they run on [T·B, ...] and are split back)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glif_jax.layers import merge_time, split_time, time_merged


def test_merge_is_time_major_and_split_inverts_it():
    x = np.arange(3 * 2 * 4 * 5).reshape(3, 2, 4, 5)
    merged = merge_time(jnp.asarray(x))
    assert merged.shape == (6, 4, 5)
    for t in range(3):
        for b in range(2):
            np.testing.assert_array_equal(merged[t * 2 + b], x[t, b])
    np.testing.assert_array_equal(split_time(merged, 3), x)


def test_time_merged_conv_equals_applying_it_at_every_step():
    """The paper's tdBN and time-merging conventions: a stateless layer on [T·B, ...] is the same layer at each step separately."""
    x = jax.random.normal(jax.random.key(0), (3, 2, 6, 6, 4))
    conv = nn.Conv(5, (3, 3), strides=(2, 2))
    variables = conv.init(jax.random.key(1), x[0])
    merged = time_merged(lambda frames: conv.apply(variables, frames), x)
    per_step = jnp.stack([conv.apply(variables, x[t]) for t in range(3)])
    assert merged.shape == (3, 2, 3, 3, 5)
    np.testing.assert_allclose(merged, per_step, rtol=1e-5, atol=1e-5)


def test_split_rejects_a_batch_not_divisible_by_time_steps():
    with pytest.raises(ValueError, match="time_steps=4"):
        split_time(jnp.ones((6, 3)), 4)


def test_merge_rejects_inputs_without_time_and_batch():
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        merge_time(jnp.ones((3,)))

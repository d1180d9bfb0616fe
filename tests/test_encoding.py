"""Direct encoding and the time-averaged readout (the paper's tdBN and time-merging conventions)."""

import jax.numpy as jnp
import numpy as np
import pytest

from glif_jax.layers import frames_time_first, mean_over_time, repeat_over_time


def test_direct_encoding_repeats_the_image_at_every_step():
    """The paper's tdBN and time-merging conventions: a static image is repeated T times: [B, H, W, C] -> [T, B, H, W, C]."""
    images = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype(np.float32)
    encoded = repeat_over_time(jnp.asarray(images), 5)
    assert encoded.shape == (5, 2, 4, 4, 3)
    for t in range(5):
        np.testing.assert_array_equal(encoded[t], images)


def test_event_frames_put_time_first():
    frames = np.arange(2 * 3 * 4).reshape(2, 3, 4)  # [B, T, F]
    np.testing.assert_array_equal(frames_time_first(jnp.asarray(frames)), frames.transpose(1, 0, 2))


def test_readout_is_the_mean_over_time_in_float32():
    """The paper's tdBN and time-merging conventions: the network output is the classifier output averaged over time."""
    outputs = np.random.default_rng(1).normal(size=(4, 2, 10)).astype(np.float32)
    readout = mean_over_time(jnp.asarray(outputs, jnp.bfloat16))
    assert readout.dtype == jnp.float32 and readout.shape == (2, 10)
    np.testing.assert_allclose(readout, np.asarray(jnp.asarray(outputs, jnp.bfloat16), np.float32).mean(0), rtol=1e-6)


def test_time_steps_must_be_positive():
    with pytest.raises(ValueError, match="time_steps"):
        repeat_over_time(jnp.ones((2, 3)), 0)

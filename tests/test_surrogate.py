"""glif_jax.surrogate: exact Heaviside forward, the GLIF paper's neuron equations surrogate shapes backward."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glif_jax import surrogate
from tests.neuron_reference import SURROGATES

POINTS = np.array([-2.0, -0.75, -0.5, -0.49, -0.1, 0.0, 0.1, 0.25, 0.49, 0.5, 0.75, 1.0, 3.0], np.float32)


def test_forward_is_exact_heaviside_with_h0_zero():
    """The GLIF paper's neuron equations: fire only when u > v_th, so H(0) = 0."""
    for name in surrogate.names():
        out = surrogate.heaviside(jnp.asarray(POINTS), name)
        np.testing.assert_array_equal(np.asarray(out), (POINTS > 0).astype(np.float32))


@pytest.mark.parametrize("name", ["rectangular", "sigmoid", "arctan", "triangle"])
@pytest.mark.parametrize("width", [None, 0.5, 3.0])
def test_gradient_is_the_surrogate_shape(name, width):
    """The GLIF paper's neuron equations: rectangular (width 1), sigmoid (k=4), arctan (k=2), triangle, each with its width."""
    formula, default = SURROGATES[name]
    w = default if width is None else width
    fn = surrogate.get(name, width)
    grads = jax.vmap(jax.grad(lambda x: surrogate.heaviside(x, fn)))(jnp.asarray(POINTS))
    np.testing.assert_allclose(np.asarray(grads), formula(POINTS.astype(np.float64), w), rtol=1e-5, atol=1e-7)


def test_paper_rectangle_is_one_inside_half_width():
    grads = jax.vmap(jax.grad(surrogate.heaviside))(jnp.asarray(POINTS))
    np.testing.assert_array_equal(np.asarray(grads), (np.abs(POINTS) < 0.5).astype(np.float32))


def test_user_registered_surrogate():
    surrogate.register("gaussian_test", lambda x, w: jnp.exp(-(x / w) ** 2), 0.5)
    fn = surrogate.get("gaussian_test")
    assert fn.width == 0.5
    grads = jax.vmap(jax.grad(lambda x: surrogate.heaviside(x, fn)))(jnp.asarray(POINTS))
    np.testing.assert_allclose(np.asarray(grads), np.exp(-(POINTS / 0.5) ** 2), rtol=1e-6)


def test_unknown_name_and_bad_width():
    with pytest.raises(ValueError, match="unknown name 'boxcar'"):
        surrogate.get("boxcar")
    with pytest.raises(ValueError, match="surrogate_width"):
        surrogate.get("sigmoid", 0.0)
    with pytest.raises(TypeError, match="callable"):
        surrogate.register("bad", 3.0, 1.0)

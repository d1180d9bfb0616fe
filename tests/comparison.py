"""One numeric comparison for tests that must fail on NaN or on a change of shape."""

from __future__ import annotations

import numpy as np


def relative_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest ``|actual - expected|`` relative to the largest ``|expected|``.

    Fails (AssertionError) when the shapes differ or either side holds a NaN or infinity,
    so that a NaN can never make a comparison pass.
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert np.all(np.isfinite(actual)) and np.all(np.isfinite(expected)), "non-finite values"
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-30)
    return float(np.max(np.abs(actual - expected), initial=0.0)) / scale

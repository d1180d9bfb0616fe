"""tests.comparison.relative_difference: a NaN, an infinity or a shape change never passes."""

import numpy as np
import pytest

from tests.comparison import relative_difference


def test_relative_difference_is_relative_to_the_largest_expected_value():
    assert relative_difference(np.array([1.0, 2.0]), np.array([1.0, 4.0])) == pytest.approx(0.5)
    assert relative_difference(np.zeros(3), np.zeros(3)) == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_fail_on_either_side(bad):
    with pytest.raises(AssertionError, match="non-finite"):
        relative_difference(np.array([1.0, bad]), np.array([1.0, 2.0]))
    with pytest.raises(AssertionError, match="non-finite"):
        relative_difference(np.array([1.0, 2.0]), np.array([bad, 2.0]))


def test_shape_mismatch_fails():
    with pytest.raises(AssertionError):
        relative_difference(np.ones(3), np.ones(4))

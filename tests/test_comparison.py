"""tests.comparison: a NaN, an infinity, a shape change or a change of tree structure never passes."""

import jax.numpy as jnp
import numpy as np
import pytest

from tests.comparison import (
    absolute_difference,
    assert_bit_identical,
    assert_tree_close,
    leaf_differences,
    relative_difference,
    tree_difference,
)

DIFFERENCES = [absolute_difference, relative_difference]


def test_relative_difference_is_relative_to_the_largest_expected_value():
    assert relative_difference(np.array([1.0, 2.0]), np.array([1.0, 4.0])) == pytest.approx(0.5)
    assert relative_difference(np.zeros(3), np.zeros(3)) == 0.0


def test_absolute_difference_is_the_largest_elementwise_difference():
    assert absolute_difference(np.array([1.0, 2.0]), np.array([1.5, 4.0])) == pytest.approx(2.0)
    # in float64, so unsigned integers (a raw PRNG key) do not wrap around
    assert absolute_difference(np.array([1], np.uint32), np.array([3], np.uint32)) == 2.0


@pytest.mark.parametrize("difference", DIFFERENCES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_fail_on_either_side(difference, bad):
    with pytest.raises(AssertionError, match="non-finite"):
        difference(np.array([1.0, bad]), np.array([1.0, 2.0]))
    with pytest.raises(AssertionError, match="non-finite"):
        difference(np.array([1.0, 2.0]), np.array([bad, 2.0]))
    with pytest.raises(AssertionError, match="non-finite"):  # the same NaN on both sides
        difference(np.array([1.0, bad]), np.array([1.0, bad]))


@pytest.mark.parametrize("difference", DIFFERENCES)
def test_shape_mismatch_fails(difference):
    with pytest.raises(AssertionError, match="shapes differ"):
        difference(np.ones(3), np.ones(4))
    with pytest.raises(AssertionError, match="shapes differ"):  # no broadcasting either
        difference(np.ones((1, 3)), np.ones(3))


def tree(**changes):
    """A pytree of the kinds the tests compare: nested dicts, a tuple, a scalar, float32 arrays."""
    base = {"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)},
            "state": (np.zeros(2, np.float32), np.float32(1.0))}
    for key, value in changes.items():
        if key == "b":
            base["params"]["b"] = value
        else:
            base[key] = value
    return base


def test_tree_difference_is_the_worst_leaf_each_relative_to_itself():
    actual = tree(b=np.array([1.0, 1.0, 1.5], np.float32))
    assert tree_difference(tree(), tree()) == 0.0
    assert tree_difference(actual, tree()) == pytest.approx(0.5)
    assert leaf_differences(actual, tree())["['params']['b']"] == pytest.approx(0.5)
    assert leaf_differences(actual, tree())["['params']['w']"] == 0.0
    assert tree_difference(actual, tree(), absolute_difference) == pytest.approx(0.5)
    assert tree_difference(jnp.ones(3), np.ones(3)) == 0.0  # an array is a tree of one leaf
    assert tree_difference({}, {}) == 0.0


@pytest.mark.parametrize("difference", DIFFERENCES)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("side", ["actual", "expected"])
def test_tree_difference_fails_on_a_non_finite_leaf_and_names_it(difference, bad, side):
    broken = tree(b=np.array([1.0, bad, 1.0], np.float32))
    actual, expected = (broken, tree()) if side == "actual" else (tree(), broken)
    with pytest.raises(AssertionError, match=r"\['params'\]\['b'\]: non-finite"):
        tree_difference(actual, expected, difference)


def test_tree_difference_fails_on_a_shape_mismatch():
    with pytest.raises(AssertionError, match=r"\['params'\]\['b'\]: shapes differ"):
        tree_difference(tree(b=np.ones(4, np.float32)), tree())


@pytest.mark.parametrize("other", [
    {"params": {"w": np.zeros((2, 3))}, "state": (np.zeros(2), np.float32(1.0))},   # a leaf missing
    tree(extra=np.zeros(2)),                                                       # a leaf more
    tree(state=(np.zeros(2), np.float32(1.0), np.zeros(1))),                      # a longer tuple
    tree(state=[np.zeros(2), np.float32(1.0)]),                                    # a list, not a tuple
    tree(b=None),                                                                  # None is no leaf
    {"params": {"w": np.zeros((2, 3)), "c": np.ones(3)}, "state": (np.zeros(2), np.float32(1.0))},  # renamed
], ids=["missing", "extra", "longer", "list", "none", "renamed"])
def test_tree_structure_mismatch_fails_in_both_directions(other):
    with pytest.raises(AssertionError, match="tree structures differ"):
        tree_difference(other, tree())
    with pytest.raises(AssertionError, match="tree structures differ"):
        tree_difference(tree(), other)
    with pytest.raises(AssertionError, match="tree structures differ"):
        assert_tree_close(other, tree())


def test_assert_tree_close_uses_elementwise_tolerances():
    assert_tree_close(tree(), tree())
    assert_tree_close(tree(b=np.array([1.0, 1.0, 1.0 + 1e-6], np.float32)), tree(), rtol=2e-6)
    assert_tree_close(tree(b=np.array([1.0, 1.0, 1.0 + 1e-6], np.float32)), tree(), atol=2e-6)
    with pytest.raises(AssertionError, match=r"leaf \['params'\]\['b'\]"):
        assert_tree_close(tree(b=np.array([1.0, 1.0, 1.0 + 1e-6], np.float32)), tree())  # zero tolerance: exact
    with pytest.raises(AssertionError):
        assert_tree_close(tree(b=np.array([1.0, 1.0, 1.1], np.float32)), tree(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_assert_tree_close_fails_on_non_finite_values_even_where_both_sides_agree(bad):
    """numpy.testing.assert_allclose and assert_array_equal pass NaN == NaN and inf == inf."""
    broken = tree(b=np.array([1.0, bad, 1.0], np.float32))
    for actual, expected in ((broken, tree()), (tree(), broken), (broken, broken)):
        with pytest.raises(AssertionError, match="non-finite"):
            assert_tree_close(actual, expected, rtol=1.0, atol=1.0)


def test_assert_tree_close_fails_on_a_shape_mismatch_instead_of_broadcasting():
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_tree_close(np.ones((2, 3)), np.ones(3))


def test_assert_bit_identical_compares_dtype_and_bytes():
    """+0 against −0, float64 against float32 and int64 against int32 with the same numbers
    all fail, naming the leaf; identical trees (bfloat16, integer keys, empty arrays) pass."""
    import ml_dtypes

    same = tree(b=np.array([1.0, 0.0, -2.5], np.float32))
    assert_bit_identical(same, tree(b=np.array([1.0, 0.0, -2.5], np.float32)))
    assert_bit_identical((np.array([1, 3], ml_dtypes.bfloat16), np.array([7, 9], np.uint32), np.zeros((0, 2))),
                         (np.array([1, 3], ml_dtypes.bfloat16), np.array([7, 9], np.uint32), np.zeros((0, 2))))
    with pytest.raises(AssertionError, match=r"leaf \['params'\]\['b'\]: bytes differ, first at flat index 1"):
        assert_bit_identical(same, tree(b=np.array([1.0, -0.0, -2.5], np.float32)))
    with pytest.raises(AssertionError, match=r"leaf \['params'\]\['b'\]: dtypes differ: float64 vs float32"):
        assert_bit_identical(tree(b=np.array([1.0, 0.0, -2.5])), same)
    with pytest.raises(AssertionError, match="dtypes differ: int64 vs int32"):
        assert_bit_identical(np.array([3], np.int64), np.array([3], np.int32))
    with pytest.raises(AssertionError, match="bytes differ"):
        assert_bit_identical(np.array([1, 3], ml_dtypes.bfloat16), np.array([1, 4], ml_dtypes.bfloat16))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_assert_bit_identical_fails_on_non_finite_values_and_structure_changes(bad):
    broken = tree(b=np.array([1.0, bad, 1.0], np.float32))
    with pytest.raises(AssertionError, match=r"\['params'\]\['b'\]: non-finite"):
        assert_bit_identical(broken, broken)
    with pytest.raises(AssertionError, match="tree structures differ"):
        assert_bit_identical(tree(extra=np.zeros(2)), tree())
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_bit_identical(np.ones((1, 3)), np.ones(3))

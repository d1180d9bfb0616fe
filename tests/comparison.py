"""Numeric comparisons for tests that must fail on NaN, on infinity, or on a change of shape or structure.

Every function here raises ``AssertionError`` when either side holds a NaN or an infinity,
when two arrays differ in shape, or when two pytrees differ in structure (keys, nesting,
node types, number of leaves), so that such a result can never make a comparison pass:
``numpy.testing.assert_allclose`` treats NaN as equal to NaN, an error scaled by a NaN
maximum is NaN on both sides, ``x > tolerance`` is False for a NaN ``x``, Python's
``max`` over a list holding a NaN depends on the order, and ``zip`` over the leaves of
two trees stops silently at the shorter one.

:func:`assert_bit_identical` compares bits, not numbers: dtype and raw bytes of every leaf, so
that +0 never passes for −0, nor a float64 copy for the float32 original; the other functions
compare values in float64.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np


def _checked(actual: Any, expected: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both sides as float64 arrays, after the shape and finiteness checks."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"shapes differ: {actual.shape} vs {expected.shape}"
    actual, expected = actual.astype(np.float64), expected.astype(np.float64)
    assert np.all(np.isfinite(actual)) and np.all(np.isfinite(expected)), "non-finite values"
    return actual, expected


def absolute_difference(actual: Any, expected: Any) -> float:
    """Largest ``|actual - expected|`` (in float64; 0 for empty arrays)."""
    actual, expected = _checked(actual, expected)
    return float(np.max(np.abs(actual - expected), initial=0.0))


def relative_difference(actual: Any, expected: Any) -> float:
    """Largest ``|actual - expected|`` relative to the largest ``|expected|``."""
    actual, expected = _checked(actual, expected)
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-30)
    return float(np.max(np.abs(actual - expected), initial=0.0)) / scale


Difference = Callable[[Any, Any], float]


def _leaf_pairs(actual: Any, expected: Any) -> list[tuple[str, Any, Any]]:
    """``(path, actual leaf, expected leaf)`` of two pytrees whose structures must be equal."""
    actual_leaves, actual_structure = jax.tree_util.tree_flatten_with_path(actual)
    expected_leaves, expected_structure = jax.tree_util.tree_flatten_with_path(expected)
    assert actual_structure == expected_structure, (
        f"tree structures differ:\n  actual:   {actual_structure}\n  expected: {expected_structure}")
    return [(jax.tree_util.keystr(path), a, e) for (path, a), (_, e) in zip(actual_leaves, expected_leaves)]


def leaf_differences(actual: Any, expected: Any, difference: Difference = relative_difference) -> dict[str, float]:
    """``{leaf path: difference(actual leaf, expected leaf)}`` of two pytrees of the same
    structure (an array is a tree of one leaf, path ``""``). A failure names the leaf."""
    differences = {}
    for path, a, e in _leaf_pairs(actual, expected):
        try:
            differences[path] = difference(a, e)
        except AssertionError as error:
            raise AssertionError(f"leaf {path or '(root)'}: {error}") from None
    return differences


def tree_difference(actual: Any, expected: Any, difference: Difference = relative_difference) -> float:
    """The worst of :func:`leaf_differences` (0 for trees without leaves): e.g. the largest
    relative difference of any leaf, each leaf relative to its own largest expected value."""
    return max(leaf_differences(actual, expected, difference).values(), default=0.0)


def assert_tree_close(actual: Any, expected: Any, *, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Every element of every leaf within ``atol + rtol * |expected|`` (the rule of
    ``numpy.testing.assert_allclose``), after the structure, shape and finiteness checks.
    With the default zero tolerances: the same numbers, but +0 equals −0 and the dtypes may
    differ (compared in float64); :func:`assert_bit_identical` compares the bits."""
    for path, a, e in _leaf_pairs(actual, expected):
        try:
            a, e = _checked(a, e)
        except AssertionError as error:
            raise AssertionError(f"leaf {path or '(root)'}: {error}") from None
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, equal_nan=False, err_msg=f"leaf {path or '(root)'}")


def assert_bit_identical(actual: Any, expected: Any) -> None:
    """The same tree structure and, leaf by leaf, the same dtype, shape and raw bytes (so +0
    differs from −0, and float32 from float64 holding the same numbers); a NaN or an infinity
    in a floating-point leaf fails too (two runs that diverged alike are not identical).
    A failure names the leaf and its first differing element."""
    for path, a, e in _leaf_pairs(actual, expected):
        name = f"leaf {path or '(root)'}"
        a, e = np.asarray(a), np.asarray(e)
        assert a.dtype == e.dtype, f"{name}: dtypes differ: {a.dtype} vs {e.dtype}"
        assert a.shape == e.shape, f"{name}: shapes differ: {a.shape} vs {e.shape}"
        if np.issubdtype(a.dtype, np.inexact) or a.dtype.kind == "V":   # "V": ml_dtypes' bfloat16 and friends
            finite = np.isfinite(a.astype(np.float64)).all() and np.isfinite(e.astype(np.float64)).all()
            assert finite, f"{name}: non-finite values"
        if a.tobytes() != e.tobytes():
            elements = np.ascontiguousarray(a).reshape(-1).view(f"V{a.itemsize}") if a.size else a
            wanted = np.ascontiguousarray(e).reshape(-1).view(f"V{e.itemsize}") if e.size else e
            first = int(np.flatnonzero(elements != wanted)[0])
            raise AssertionError(f"{name}: bytes differ, first at flat index {first}: "
                                 f"{a.reshape(-1)[first]!r} vs {e.reshape(-1)[first]!r}")

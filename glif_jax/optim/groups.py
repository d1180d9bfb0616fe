"""Parameter groups of the paper's recipe, chosen by leaf name.

A leaf belongs to a group by the last key of its path, matched as a WHOLE name:
`alpha|beta|gamma` -> "gates", `tau|lam|v_th|v_re|cond` -> "primitives", anything else
(conv/linear "kernel", BN "scale"/"bias", "lambda_x", "beta_bn", ...) -> "weights".
"""

from __future__ import annotations

from typing import Any

import jax

from glif_jax.neuron import GATE_NAMES, PRIMITIVE_NAMES

GATES = "gates"
PRIMITIVES = "primitives"
WEIGHTS = "weights"
GROUPS = (WEIGHTS, PRIMITIVES, GATES)


def group_of(name: str) -> str:
    """The group ("gates" | "primitives" | "weights") of a parameter whose leaf name is `name`."""
    if name in GATE_NAMES:
        return GATES
    if name in PRIMITIVE_NAMES:
        return PRIMITIVES
    return WEIGHTS


def _leaf_name(path: tuple[Any, ...]) -> str:
    """The name of the last key of a pytree path ("" for a bare leaf; the index for sequences)."""
    if not path:
        return ""
    key = path[-1]
    for attribute in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def param_labels(params: Any) -> Any:
    """The tree of `params` with every leaf replaced by its group name (see `group_of`)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: group_of(_leaf_name(path)), params)

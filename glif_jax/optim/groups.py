"""Parameter groups of the paper's recipe: the GLIF layers' gates and primitives, and the weights.

A leaf is a gate or a primitive only if it belongs to a GLIF layer: it lives directly in a
GLIF layer's scope and its name is one of `alpha|beta|gamma` ("gates") or
`tau|lam|v_th|v_re|cond` ("primitives"). A GLIF layer's scope is a mapping that holds one
neuron's parameters and nothing else, as `glif_jax.layers.GLIF` stores them
(`glif_jax.neuron.neuron_scopes`); the scopes may also be named explicitly. Every other leaf is
a weight, whatever its name: conv/linear "kernel", BN "scale"/"bias", and a user's own layer
with a parameter called `beta` or `tau` beside its other parameters.
"""

from __future__ import annotations

from typing import Any, Collection

import jax

from glif_jax import neuron
from glif_jax.neuron import GATE_NAMES, PRIMITIVE_NAMES

GATES = "gates"
PRIMITIVES = "primitives"
WEIGHTS = "weights"
GROUPS = (WEIGHTS, PRIMITIVES, GATES)


def group_of(name: str) -> str:
    """The group ("gates" | "primitives" | "weights") of a parameter named `name` in a GLIF layer's scope."""
    if name in GATE_NAMES:
        return GATES
    if name in PRIMITIVE_NAMES:
        return PRIMITIVES
    return WEIGHTS


def _scope(path: tuple[Any, ...]) -> str:
    """The keys above a leaf joined by ``/`` (as ``glif_jax.neuron.neuron_scopes`` names scopes)."""
    return jax.tree_util.keystr(path[:-1], simple=True, separator="/")


def param_labels(params: Any, neuron_scopes: Collection[str] | None = None) -> Any:
    """The tree of `params` with every leaf replaced by its group name.

    Args:
      params: a parameter tree (e.g. a Flax ``params`` tree, a dict or a ``FrozenDict``).
      neuron_scopes: paths of the GLIF layers' scopes, their keys joined by ``/``
        (``"stage1_block1/glif1"``; ``""`` for the root), e.g. those that
        ``glif_jax.analysis.network_order(model, x, train=False)`` finds by tracing the model,
        or the scope of a neuron of your own that stores GLIF's parameters beside others.
        ``None`` (the default) finds them in `params`: every mapping that holds one neuron's
        parameters and nothing else (`glif_jax.neuron.neuron_scopes`).

    A leaf directly in one of these scopes is labelled by its name (`group_of`); every other
    leaf is a weight.
    """
    if neuron_scopes is None:
        scopes = set(neuron.neuron_scopes(params))
    else:
        scopes = {neuron_scopes} if isinstance(neuron_scopes, str) else set(neuron_scopes)

    seen: set[str] = set()

    def label(path: tuple[Any, ...], _: Any) -> str:
        scope = _scope(path)
        seen.add(scope)
        if path and scope in scopes:
            return group_of(jax.tree_util.keystr(path[-1:], simple=True))
        return WEIGHTS

    labels = jax.tree_util.tree_map_with_path(label, params)
    if neuron_scopes is not None:
        unknown = sorted(scopes - seen)
        if unknown:
            raise ValueError(f"neuron_scopes: {unknown} hold no parameters of params (paths join keys with '/')")
    return labels

"""Parameter groups of the paper's recipe: the neurons' gates and primitives, and the weights.

A leaf is a gate or a primitive only if it belongs to a neuron layer: it lives directly in a
neuron layer's scope and the neuron declares it in that group (GLIF: ``alpha|beta|gamma`` are
"gates", ``tau|lam|v_th|v_re|cond`` "primitives"; a user's neuron declares its own, by default
"primitives"). A neuron layer's scope is a mapping that holds one neuron's parameters and
nothing else, as ``glif_jax.layers.SpikingLayer`` stores them (``glif_jax.neurons.neuron_scopes``);
the scopes may also be named explicitly. Every other leaf is a weight, whatever its name:
conv/linear "kernel", BN "scale"/"bias", and a user's own layer with a parameter called
``beta`` or ``tau`` beside its other parameters.
"""

from __future__ import annotations

from typing import Any, Collection

import jax

from glif_jax.neurons import GROUPS as NEURON_GROUPS
from glif_jax.neurons import scopes as neuron_scope_tools

GATES = "gates"
PRIMITIVES = "primitives"
WEIGHTS = "weights"
GROUPS = (WEIGHTS, PRIMITIVES, GATES)
assert set(GROUPS) == set(NEURON_GROUPS)


def group_of(name: str, neuron: Any = None) -> str:
    """The group of a parameter named ``name`` in a neuron layer's scope (``neuron``: a Neuron,
    NeuronConfig or name; default GLIF); a name the neuron does not declare is a weight."""
    resolved = neuron_scope_tools.resolve(neuron if neuron is not None else "glif")
    return resolved.groups().get(name, WEIGHTS)


def _scope(path: tuple[Any, ...]) -> str:
    """The keys above a leaf joined by ``/`` (as ``glif_jax.neurons.neuron_scopes`` names scopes)."""
    return jax.tree_util.keystr(path[:-1], simple=True, separator="/")


def param_labels(params: Any, neuron_scopes: Collection[str] | None = None, neuron: Any = None) -> Any:
    """The tree of `params` with every leaf replaced by its group name.

    Args:
      params: a parameter tree (e.g. a Flax ``params`` tree, a dict or a ``FrozenDict``).
      neuron_scopes: paths of the neuron layers' scopes, their keys joined by ``/``
        (``"stage1_block1/neuron1"``; ``""`` for the root), e.g. those that
        ``glif_jax.analysis.network_order(model, x, train=False)`` finds by tracing the model,
        or the scope of a layer of your own that stores a neuron's parameters beside others.
        ``None`` (the default) finds them in `params`: every mapping that holds one neuron's
        parameters and nothing else (`glif_jax.neurons.neuron_scopes`).
      neuron: the network's neuron (a Neuron, NeuronConfig or name): only its scopes are found,
        and its declared groups label them; ``None``: any registered neuron's scopes (each
        labelled by its own neuron), and GLIF's groups for explicitly named scopes.

    A leaf directly in one of these scopes is labelled by its neuron's group for its name; every
    other leaf is a weight.
    """
    if neuron_scopes is None:
        found = neuron_scope_tools.scope_neurons(params, neuron)
        groups = {path: matched.groups() for path, matched in found.items()}
    else:
        names = {neuron_scopes} if isinstance(neuron_scopes, str) else set(neuron_scopes)
        default = neuron_scope_tools.resolve(neuron if neuron is not None else "glif")
        groups = {path: default.groups() for path in names}

    seen: set[str] = set()

    def label(path: tuple[Any, ...], _: Any) -> str:
        scope = _scope(path)
        seen.add(scope)
        if path and scope in groups:
            return groups[scope].get(jax.tree_util.keystr(path[-1:], simple=True), WEIGHTS)
        return WEIGHTS

    labels = jax.tree_util.tree_map_with_path(label, params)
    if neuron_scopes is not None:
        unknown = sorted(set(groups) - seen)
        if unknown:
            raise ValueError(f"neuron_scopes: {unknown} hold no parameters of params (paths join keys with '/')")
    return labels

"""Finding the neurons' parameters in a parameter tree (e.g. a Flax ``params`` tree or a checkpoint).

A neuron layer's *scope* is a mapping that holds one neuron's parameters and nothing else, as
``glif_jax.layers.SpikingLayer`` stores them: its keys are exactly the neuron's parameter names.
Optimiser groups, the analysis and the checkpoint tools find the layers this way; given the
neuron (or its config), only that neuron's scopes match, else any registered neuron's.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax

from glif_jax.neurons import registry
from glif_jax.neurons.config import NeuronConfig
from glif_jax.neurons.interface import Neuron

NeuronLike = Neuron | NeuronConfig | str | None


def resolve(neuron: NeuronLike) -> Neuron | None:
    """A Neuron from a Neuron, a :class:`NeuronConfig`, a registered name or import path (None stays None)."""
    if neuron is None or isinstance(neuron, Neuron):
        return neuron
    if isinstance(neuron, NeuronConfig):
        return neuron.neuron
    return registry.get(neuron)


def match(tree: Any, neuron: NeuronLike = None) -> Neuron | None:
    """The neuron whose parameters ``tree`` holds (exactly its names, array leaves), or None.

    With ``neuron`` given, only that neuron matches; else the registered neuron whose parameter
    names are exactly the keys of ``tree`` — None where several are (e.g. a user's neuron with
    LIF's names ``tau, v_th``): then give ``neuron``.
    """
    if not isinstance(tree, Mapping) or not tree or any(isinstance(value, Mapping) for value in tree.values()):
        return None
    keys = set(map(str, tree))
    candidates = [resolve(neuron)] if neuron is not None else [registry.get(name) for name in registry.names()]
    found = [candidate for candidate in candidates if keys == set(candidate.param_names)]
    return found[0] if len(found) == 1 else None


def map_scopes(function: Callable[[str, Neuron, Mapping[str, Any]], Any], tree: Any, neuron: NeuronLike = None,
               keys: tuple[str, ...] = ()) -> Any:
    """``tree`` (its mappings as dicts) with every neuron scope replaced by ``function(path, neuron, params)``,
    ``path`` being the keys that lead to it joined by ``/``."""
    found = match(tree, neuron)
    if found is not None:
        return function("/".join(keys), found, tree)
    if isinstance(tree, Mapping):
        return {key: map_scopes(function, value, neuron, (*keys, str(key))) for key, value in tree.items()}
    return tree


def find(tree: Any, neuron: NeuronLike = None) -> dict[str, tuple[Mapping[str, Any], Neuron]]:
    """``{path: (params, neuron)}`` for every neuron layer inside ``tree``, in the tree's order
    (paths join keys with ``/``: ``"stage1_block1/neuron1"``; ``""`` when ``tree`` is one layer's)."""
    found: dict[str, tuple[Mapping[str, Any], Neuron]] = {}
    map_scopes(lambda path, matched, params: found.setdefault(path, (params, matched)), tree, neuron)
    return found


def neuron_scopes(tree: Any, neuron: NeuronLike = None) -> dict[str, Mapping[str, Any]]:
    """Every neuron layer's parameters inside ``tree``, ``{path: params}`` (see :func:`find`)."""
    return {path: params for path, (params, _) in find(tree, neuron).items()}


def scope_neurons(tree: Any, neuron: NeuronLike = None) -> dict[str, Neuron]:
    """``{path: neuron}`` for every neuron scope of ``tree`` (see :func:`find`)."""
    return {path: matched for path, (_, matched) in find(tree, neuron).items()}


def constrain(params: Mapping[str, Any], neuron: Neuron) -> dict[str, jax.Array]:
    """One layer's stored parameters as the values its neuron uses (each parameter's constraint)."""
    return {name: neuron.parameter(name).constrain(jax.numpy.asarray(raw)) for name, raw in params.items()}


def constrained_tree(tree: Any, neuron: NeuronLike = None) -> Any:
    """``tree`` with every neuron scope replaced by its constrained values; the rest keeps its leaves."""
    return map_scopes(lambda _, matched, params: constrain(params, matched), tree, neuron)

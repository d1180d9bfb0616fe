"""The learned parameters of every neuron layer of a model, in network order (the paper's appendix A.1).

    order = network_order(model, example_input, train=False)     # GLIF paths as the model calls them
    layers = neuron_layers(variables["params"], order=order)
    layers[0].name, layers[0].values["alpha"]                    # "stem", [C] values in (0, 1)

Values are the *constrained* ones the neuron uses (``sigmoid`` of the stored logits), never
the raw logits. Parameter trees that went through ``jit`` or a checkpoint have their keys
sorted alphabetically (``stem`` after ``stage4_block2``), so the order of the layers comes
from tracing the model (:func:`network_order`), not from the tree.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np

from glif_jax.analysis.naming import readable_names
from glif_jax.layers import SpikingLayer
from glif_jax.layers.spiking import neuron_values
from glif_jax.neurons import scopes
from glif_jax.neurons.interface import Neuron, Parameter


@dataclasses.dataclass(frozen=True)
class NeuronLayer:
    """One neuron layer's constrained parameter values.

    index: position in network order (0 = closest to the input).
    path: Flax module path, ``/``-joined (``"stage1_block1/neuron1"``).
    name: short readable name (``"s1b1.n1"``; see :mod:`glif_jax.analysis.naming`).
    values: ``{parameter: array}`` in (0, 1): ``[C]`` channel-wise or ``[]`` layer-wise;
      a per-time-step parameter (GLIF's ``cond``) is ``[T, C]`` (``[T]`` layer-wise). Only the
      parameters of the neuron (GLIF: all eight; GLIF_f: no gates; LIF: ``tau``, ``v_th``).
    neuron: the layer's neuron (None: GLIF's parameter names are assumed).
    """

    index: int
    path: str
    name: str
    values: dict[str, np.ndarray]
    neuron: Neuron | None = None

    def parameters(self) -> list[Parameter]:
        """The declared parameters of the layer's neuron that it holds, in the neuron's order."""
        neuron = self.neuron or scopes.resolve("glif")
        return [parameter for parameter in neuron.parameters if parameter.name in self.values]

    @property
    def channels(self) -> int:
        """Values per parameter (1 for a layer-wise layer)."""
        sizes = [np.size(self.values[p.name]) for p in self.parameters() if not p.per_time_step and p.per_channel]
        return int(max(sizes, default=1))

    @property
    def time_steps(self) -> int | None:
        """T from a per-time-step parameter (GLIF's ``cond``), or None when the neuron has none."""
        timed = [p.name for p in self.parameters() if p.per_time_step]
        return int(np.shape(self.values[timed[0]])[0]) if timed else None


def _params_of(tree: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accepts a ``params`` tree or a variables dict holding one under ``"params"``."""
    if not isinstance(tree, Mapping):
        raise TypeError(f"params: expected a mapping (a Flax params tree), got {type(tree).__name__}")
    if "params" in tree and isinstance(tree["params"], Mapping):
        return tree["params"]
    return tree


def neuron_layers(params: Mapping[str, Any], order: Sequence[str] | None = None, neuron: Any = None
                  ) -> list[NeuronLayer]:
    """Every neuron layer of ``params`` with its constrained values, as host NumPy arrays.

    Args:
      params: a Flax ``params`` tree (or a variables dict with a ``"params"`` entry).
      order: GLIF layer paths in network order (:func:`network_order`); None keeps the
        tree's order, which is the network order only for a tree fresh from ``model.init``.
        Layers of ``params`` missing from ``order`` follow the ordered ones, in tree order.
      neuron: the network's neuron (a Neuron, NeuronConfig or name); None: any registered
        neuron's layers.
    Returns:
      ``NeuronLayer`` list in network order, with unique readable names.
    Raises:
      ValueError: no GLIF layer in ``params``, or ``order`` names a path ``params`` lacks.
    """
    tree = _params_of(params)
    found = neuron_values(tree, neuron=neuron)
    neurons = {path or "glif": matched for path, matched in scopes.scope_neurons(tree, neuron).items()}
    if not found:
        expected = (f"the parameters {scopes.resolve(neuron).param_names} of neuron {scopes.resolve(neuron).name!r}"
                    if neuron is not None else "one registered neuron's parameters")
        raise ValueError(f"params: no neuron layer found (expected mappings of {expected} somewhere in the tree)")
    paths = list(found)
    if order is not None:
        unknown = [path for path in order if path not in found]
        if unknown:
            raise ValueError(f"order: paths {unknown} are not neuron layers of params; its neuron layers: {paths}")
        paths = list(dict.fromkeys(order)) + [path for path in paths if path not in order]
    names = readable_names(paths)
    return [
        NeuronLayer(index, path, name, {key: np.asarray(jax.device_get(value)) for key, value in found[path].items()},
                    neurons.get(path))
        for index, (path, name) in enumerate(zip(paths, names))
    ]


def network_order(model: nn.Module, example_input: Any, *args: Any, **kwargs: Any) -> list[str]:
    """Paths of the model's neuron layers in the order a forward pass calls them.

    Traces ``model.init(key, example_input, *args, **kwargs)`` abstractly
    (``jax.eval_shape``: no parameters are materialised, nothing is computed), so it is
    cheap for any network size. ``example_input`` may be an array or a
    ``jax.ShapeDtypeStruct``; e.g. ``network_order(model, jnp.zeros((1, 32, 32, 3)), train=False)``.
    """
    called: list[str] = []

    def record_glif_calls(next_call, call_args, call_kwargs, context):
        if isinstance(context.module, SpikingLayer) and context.method_name == "__call__":
            path = "/".join(context.module.path)
            if path not in called:
                called.append(path)
        return next_call(*call_args, **call_kwargs)

    def init(inputs):
        return model.init(jax.random.PRNGKey(0), inputs, *args, **kwargs)

    with nn.intercept_methods(record_glif_calls):
        jax.eval_shape(init, example_input)
    return called

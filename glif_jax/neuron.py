"""The GLIF neuron as pure JAX functions (the GLIF paper's neuron equations). No Flax, no training: import it alone.

The functions of the GLIF paper's neuron under their familiar names; every neuron (GLIF,
GLIF_f, LIF, PLIF, an adaptive LIF, a user's own) is defined and run through
``glif_jax.neurons``, and these are that interface with GLIF's parameter names:

    spikes = glif(params, inputs)                          # params: logits, inputs [T, ..., C]
    spikes, membranes, final = glif_scan(params, inputs)
    state, spikes_t = glif_step(state, params, inputs_t, t)

Parameters are a mapping of *logits* under the names of the configured neuron (GLIF:
:data:`PARAM_NAMES`); every gate and primitive is ``sigmoid(logit)``. Inputs put time first,
channels last: ``[T, ..., C]``. ``kind=`` picks any registered neuron (``"lif"``, ``"plif"``,
...), e.g. ``glif(params, x, kind="lif")``.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from glif_jax.neurons import loop, scopes
from glif_jax.neurons.config import DEPRECATED_IMPLEMENTATIONS, GATE_MODES, IMPLEMENTATIONS, NeuronConfig, make_config
from glif_jax.neurons.glif import GATE_NAMES, PRIMITIVE_NAMES, Coefficients, coefficients_for
from glif_jax.neurons.interface import MembraneState as NeuronState
from glif_jax.neurons.interface import zero_state

PARAM_NAMES = GATE_NAMES + PRIMITIVE_NAMES

Params = Mapping[str, jax.Array]

__all__ = [
    "DEPRECATED_IMPLEMENTATIONS", "GATE_MODES", "GATE_NAMES", "IMPLEMENTATIONS", "PARAM_NAMES", "PRIMITIVE_NAMES",
    "Coefficients", "NeuronConfig", "NeuronState", "coefficients", "constrained", "constrained_tree", "glif",
    "glif_scan", "glif_step", "initial_state", "neuron_scopes",
]


def constrained(params: Params, neuron: Any = None) -> dict[str, jax.Array]:
    """The values a neuron uses from its stored parameters: each parameter's constraint (for the
    GLIF family ``sigmoid`` of every logit, all in (0, 1)).

    ``neuron``: a Neuron, NeuronConfig or name; default: the registered neuron whose parameters
    ``params`` holds, else ``sigmoid`` of every entry.
    """
    found = scopes.match(params, neuron)
    if found is None:
        if neuron is not None:
            resolved = scopes.resolve(neuron)
            raise ValueError(f"params: expected the parameters {resolved.param_names} of neuron {resolved.name!r}, "
                             f"got {sorted(params)}")
        return {name: jax.nn.sigmoid(jnp.asarray(logit)) for name, logit in params.items()}
    return scopes.constrain(params, found)


def neuron_scopes(tree: Any, neuron: Any = None) -> dict[str, Params]:
    """Every neuron layer's parameters inside ``tree``, ``{path: params}`` (:func:`glif_jax.neurons.neuron_scopes`)."""
    return scopes.neuron_scopes(tree, neuron)


def constrained_tree(tree: Any, neuron: Any = None) -> Any:
    """``tree`` with every neuron layer's parameters replaced by their constrained values."""
    return scopes.constrained_tree(tree, neuron)


def coefficients(params: Params, config: NeuronConfig, dtype: Any = jnp.float32) -> Coefficients:
    """The recurrence's coefficients of a GLIF-family neuron (``glif``, ``glif_f``, ``lif``) from its logits."""
    neuron = config.neuron
    return coefficients_for(neuron, loop.constrained_values(neuron, params, config, dtype))


def initial_state(shape: tuple[int, ...], dtype: Any = jnp.float32) -> NeuronState:
    """Zero membrane and no spike, ``shape`` = one time step's ``[..., C]``."""
    return zero_state(shape, dtype)


def glif_step(state: Any, params: Params, inputs: jax.Array, time_step: int | jax.Array,
              config: NeuronConfig | None = None, **options) -> tuple[Any, jax.Array]:
    """One step: ``(state, params, input_t) -> (state, spikes_t)`` (:func:`glif_jax.neurons.step`).

    ``inputs`` is one time step ``[..., C]``; ``time_step`` picks the row of ``cond``.
    Differentiable through the surrogate; write your own loop around it.
    """
    return loop.step(state, params, inputs, time_step, make_config(config, options))


def glif_scan(params: Params, inputs: jax.Array, initial: Any = None, config: NeuronConfig | None = None,
              **options) -> tuple[jax.Array, jax.Array, Any]:
    """Runs the neuron over time and returns everything it computed.

    Args:
      params: logits under ``config.param_names``; ``cond`` is ``[T]`` or ``[T, C]``, the
        others ``[]`` (layer-wise) or ``[C]`` (channel-wise).
      inputs: synaptic input ``[T, ..., C]``, floating.
      initial: state before the first step (default: the neuron's own, zeros for GLIF), each ``[..., C]``.
      config / options: a :class:`NeuronConfig`, or its fields as keywords.

    Returns:
      ``spikes`` (shape and dtype of ``inputs``), the membranes ``[T, ..., C]`` in the state
      dtype (every step's whole state for a neuron whose state has no ``membrane``), and the
      final state (to continue a stream).
    """
    spikes, states, final = loop.scan(params, inputs, make_config(config, options), initial, keep_states=True)
    return spikes, getattr(states, "membrane", states), final


def glif(params: Params, inputs: jax.Array, config: NeuronConfig | None = None, **options) -> jax.Array:
    """Spikes ``[T, ..., C]`` (shape and dtype of ``inputs``) from the neuron's initial state.

    See :func:`glif_scan` for the arguments; e.g.
    ``glif(params, x, gates="hard", surrogate="sigmoid", surrogate_width=4.0)``.
    """
    return loop.run(params, inputs, make_config(config, options))

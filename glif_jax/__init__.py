"""glif-jax: the GLIF spiking neuron (Yao et al., NeurIPS 2022) in JAX/Flax.

The pure core (no Flax) is :mod:`glif_jax.neuron` and :mod:`glif_jax.surrogate`::

    spikes = glif_jax.glif(params, inputs)              # inputs [T, ..., C]
    state, spikes_t = glif_jax.glif_step(state, params, inputs_t, t)
"""

from glif_jax import surrogate
from glif_jax.neuron import (
    GATE_NAMES,
    PARAM_NAMES,
    PRIMITIVE_NAMES,
    Coefficients,
    NeuronConfig,
    NeuronState,
    coefficients,
    constrained,
    constrained_tree,
    glif,
    glif_scan,
    glif_step,
    initial_state,
)

__all__ = [
    "GATE_NAMES",
    "PARAM_NAMES",
    "PRIMITIVE_NAMES",
    "Coefficients",
    "NeuronConfig",
    "NeuronState",
    "coefficients",
    "constrained",
    "constrained_tree",
    "glif",
    "glif_scan",
    "glif_step",
    "initial_state",
    "surrogate",
]

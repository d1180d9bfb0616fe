"""glif-jax: the GLIF spiking neuron (Yao et al., NeurIPS 2022) in JAX/Flax.

The pure core (no Flax) is :mod:`glif_jax.neuron` and :mod:`glif_jax.surrogate`::

    spikes = glif_jax.glif(params, inputs)              # inputs [T, ..., C]
    state, spikes_t = glif_jax.glif_step(state, params, inputs_t, t)

The names below load on first use, so that ``import glif_jax.train.cli`` (the ``glif-train``
command) can set up the process before JAX is imported.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_NEURON_NAMES = (
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
)

__all__ = [*_NEURON_NAMES, "surrogate", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _NEURON_NAMES:
        return getattr(importlib.import_module("glif_jax.neuron"), name)
    if name == "surrogate":
        return importlib.import_module("glif_jax.surrogate")
    raise AttributeError(f"module 'glif_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

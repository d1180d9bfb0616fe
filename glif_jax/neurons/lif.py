"""LIF with hard reset, the special case of GLIF used as a baseline (the GLIF paper's neuron equations).

    membrane = tau * membrane_prev * (1 - spike_prev) + input,    spike = H(membrane - v_th)

It is GLIF's recurrence with ``decay = tau``, ``reset_gate = 1`` and no leak, conductance or
soft reset, so it runs on GLIF's fast paths (the compiled CPU kernel, the XLA scan).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from glif_jax.neurons.glif import COEFFICIENTS, PRIMITIVES, Coefficients, coefficient_neuron
from glif_jax.neurons.registry import built_in


def lif_coefficients(values: Mapping[str, jax.Array]) -> Coefficients:
    one, zero = jnp.ones((), values["tau"].dtype), jnp.zeros((), values["tau"].dtype)
    return Coefficients(values["tau"], one, zero, one, zero, values["v_th"])


LIF = built_in(lambda: coefficient_neuron(
    "lif", lif_coefficients, tuple(p for p in PRIMITIVES if p.name in ("tau", "v_th")),
    "LIF with hard reset: decay tau, threshold v_th (GLIF's special case)"))
COEFFICIENTS[LIF] = lif_coefficients

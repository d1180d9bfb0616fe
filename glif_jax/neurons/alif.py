"""An adaptive-threshold LIF neuron: each spike raises the threshold, which then relaxes back.

Written only with the public neuron interface (``glif_jax.neurons``), as a user would write a neuron::

    membrane_t   = tau * membrane_{t-1} * (1 - spike_{t-1}) + input_t       LIF with hard reset
    adaptation_t = rho * adaptation_{t-1} + (1 - rho) * spike_{t-1}          running average of spikes
    spike_t      = H(membrane_t - (v_th + kappa * adaptation_t))

``tau, v_th, rho, kappa`` are learnable, each ``sigmoid`` of a stored logit (values in (0, 1)).
With ``kappa = 0`` it is the library's LIF (``kind="lif"``), spike for spike.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp

from glif_jax import neurons


class AdaptiveState(NamedTuple):
    """What the neuron carries between steps, each one time step's ``[..., C]``."""

    membrane: jax.Array
    spike: jax.Array
    adaptation: jax.Array


def alif_step(state: AdaptiveState, params: Mapping[str, jax.Array], inputs_t: jax.Array,
              time_step: jax.Array) -> tuple[AdaptiveState, jax.Array]:
    """One step (see the module doc); ``params`` are the constrained values."""
    del time_step
    membrane = params["tau"] * state.membrane * (1 - state.spike) + inputs_t
    adaptation = params["rho"] * state.adaptation + (1 - params["rho"]) * state.spike
    spikes = neurons.spike(membrane - (params["v_th"] + params["kappa"] * adaptation))
    return AdaptiveState(membrane, spikes, adaptation), spikes


def alif_initial_state(shape: tuple[int, ...], dtype=jnp.float32) -> AdaptiveState:
    zeros = jnp.zeros(shape, dtype)
    return AdaptiveState(zeros, zeros, zeros)


ALIF = neurons.register(neurons.Neuron(
    "alif", alif_step,
    (neurons.Parameter("tau", 0.25, symbol="τ", math=r"$\tau$", meaning="membrane decay factor"),
     neurons.Parameter("v_th", 0.5, symbol="V_th", math=r"$V_{th}$", meaning="base firing threshold"),
     neurons.Parameter("rho", 0.8, symbol="ρ", math=r"$\rho$", meaning="adaptation decay factor"),
     neurons.Parameter("kappa", 0.5, symbol="κ", math=r"$\kappa$",
                       meaning="threshold increase per unit of adaptation")),
    initial_state=alif_initial_state,
    description="adaptive-threshold LIF: each spike raises the threshold by kappa, relaxing with rho"))

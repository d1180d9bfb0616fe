"""A neuron of your own, in its own file: LIF behind a leaky synaptic current.

    current_t  = syn * current_{t-1} + input_t                  a synaptic current that filters the input
    membrane_t = tau * membrane_{t-1} * (1 - spike_{t-1}) + current_t     LIF with hard reset
    spike_t    = H(membrane_t - v_th)

``syn, tau, v_th`` are learnable, each the sigmoid of a stored logit (values in (0, 1)); with
``syn`` -> 0 it is glif-jax's LIF. The option ``reset="soft"`` subtracts ``v_th`` after a spike
instead. Nothing else is needed: glif-jax runs it over time, keeps only each step's state for
the backward pass, gives every paper network its layers, groups its parameters for the
optimiser (primitives: the neurons' schedule, no weight decay) and draws them with glif-plot.

Use it by import path (this folder on PYTHONPATH): ``kind="my_neurons:synaptic_lif"``.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp

from glif_jax import neurons


class SynapticState(NamedTuple):
    """What the neuron carries from one step to the next, each one time step's ``[..., C]``."""

    current: jax.Array
    membrane: jax.Array
    spike: jax.Array


def synaptic_step(state: SynapticState, params: Mapping[str, jax.Array], inputs_t: jax.Array, time_step: jax.Array,
                  *, reset: str = "hard") -> tuple[SynapticState, jax.Array]:
    """One step; ``params`` are the values after the sigmoid."""
    if reset not in ("hard", "soft"):
        raise ValueError(f"synaptic_lif: reset must be 'hard' or 'soft', got {reset!r}")
    current = params["syn"] * state.current + inputs_t
    if reset == "hard":
        membrane = params["tau"] * state.membrane * (1 - state.spike) + current
    else:
        membrane = params["tau"] * state.membrane + current - params["v_th"] * state.spike
    spikes = neurons.spike(membrane - params["v_th"])
    return SynapticState(current, membrane, spikes), spikes


def zero_state(shape: tuple[int, ...], dtype=jnp.float32) -> SynapticState:
    zeros = jnp.zeros(shape, dtype)
    return SynapticState(zeros, zeros, zeros)


synaptic_lif = neurons.Neuron(
    "synaptic_lif", synaptic_step,
    (neurons.Parameter("syn", 0.5, symbol="s", math="$s$", meaning="synaptic current decay"),
     neurons.Parameter("tau", 0.25, symbol="τ", math=r"$\tau$", meaning="membrane decay"),
     neurons.Parameter("v_th", 0.5, symbol="V_th", math="$V_{th}$", meaning="firing threshold")),
    initial_state=zero_state,
    description="LIF behind a leaky synaptic current",
)

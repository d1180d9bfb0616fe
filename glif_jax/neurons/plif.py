"""PLIF, the parametric LIF neuron (Fang et al., ICCV 2021), with spikingjelly's ``ParametricLIFNode`` semantics.

Written only with the public neuron interface (``glif_jax.neurons``), as a user would write a
neuron. One step, with the learnable ``1/tau = sigmoid(w)``::

    decay_input, v_reset = 0 or soft:  v = v + (x - v) / tau
    decay_input, v_reset != 0:         v = v + (x - (v - v_reset)) / tau
    no decay_input, v_reset = 0/soft:  v = v * (1 - 1/tau) + x
    no decay_input, v_reset != 0:      v = v - (v - v_reset) / tau + x
    spike = H(v - v_threshold)  (fires at v >= v_threshold, as spikingjelly)
    hard reset:                        v = (1 - spike) * v + spike * v_reset
    soft reset:                        v = v - spike * v_threshold

A soft reset is ``soft_reset=True`` (or spikingjelly's spelling ``v_reset=None``); the reset
happens in the same step as the spike; the state before the first step is ``v = v_reset``
(0 for a soft reset). ``w`` starts at ``1/tau = 0.5`` (spikingjelly's ``init_tau = 2``), one
value per channel in a channel-wise layer (spikingjelly: one per layer).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp

from glif_jax import neurons


class PLIFState(NamedTuple):
    """PLIF's state: the membrane potential ``v``, one time step's ``[..., C]``."""

    membrane: jax.Array


def plif_step(state: PLIFState, params: Mapping[str, jax.Array], inputs_t: jax.Array, time_step: jax.Array, *,
              decay_input: bool = True, v_threshold: float = 1.0, v_reset: float | None = 0.0,
              soft_reset: bool = False, detach_reset: bool = False) -> tuple[PLIFState, jax.Array]:
    """One PLIF step (see the module doc); ``params["w"]`` is ``1/tau``, already constrained."""
    del time_step
    if soft_reset:
        v_reset = None
    inverse_tau, v = params["w"], state.membrane
    if decay_input:
        v = v + (inputs_t - v) * inverse_tau if not v_reset else v + (inputs_t - (v - v_reset)) * inverse_tau
    else:
        v = v * (1.0 - inverse_tau) + inputs_t if not v_reset else v - (v - v_reset) * inverse_tau + inputs_t
    spikes = neurons.spike(v - v_threshold, inclusive=True)
    reset_spikes = jax.lax.stop_gradient(spikes) if detach_reset else spikes
    if v_reset is None:
        v = v - reset_spikes * v_threshold
    else:
        v = (1.0 - reset_spikes) * v + reset_spikes * v_reset
    return PLIFState(v), spikes


def plif_initial_state(shape: tuple[int, ...], dtype=jnp.float32, *, v_reset: float | None = 0.0,
                       soft_reset: bool = False) -> PLIFState:
    return PLIFState(jnp.full(shape, 0.0 if v_reset is None or soft_reset else v_reset, dtype))


PLIF = neurons.register(neurons.Neuron(
    "plif", plif_step,
    (neurons.Parameter("w", 0.5, symbol="1/τ", math=r"$1/\tau$",
                       meaning="membrane time constant, 1/tau = sigmoid(w)"),),
    initial_state=plif_initial_state,
    description="PLIF, parametric LIF (Fang et al., ICCV 2021): learnable 1/tau = sigmoid(w), spikingjelly semantics"))

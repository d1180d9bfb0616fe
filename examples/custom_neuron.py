"""Prototype a new spiking neuron with glif-jax's functional pieces.

The neuron here is a LIF neuron with an *adaptive threshold* (each spike raises the
threshold, which then relaxes back), written as a plain function:

    u_t = tau * u_{t-1} * (1 - o_{t-1}) + x_t           membrane, hard reset (the LIF of GLIF's paper)
    a_t = rho * a_{t-1} + (1 - rho) * o_{t-1}            adaptation: a running average of past spikes
    o_t = H(u_t - (v_th + kappa * a_t))                  spike against the raised threshold

It reuses three things from the library:

- ``glif_jax.surrogate.heaviside``: the exact Heaviside step forward and a surrogate
  derivative backward (a ``jax.custom_vjp``), so gradients flow through the spikes;
- the surrogate registry (``glif_jax.surrogate.register``): a Gaussian shape is added below;
- the parameter convention of ``glif_jax.neuron``: every parameter is a logit and the neuron
  uses its sigmoid (``glif_jax.constrained``), so all values stay in (0, 1) while training.

The time loop is ``jax.lax.scan`` over a step function, as ``glif_jax.glif_step`` is scanned in
the library. With ``kappa = 0`` the neuron is the library's plain LIF (``kind="lif"``); the
script checks that the spikes agree exactly, then trains the parameters with optax so that each
channel fires at a target rate.

    python examples/custom_neuron.py --steps 100
"""

from __future__ import annotations

import argparse
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

import glif_jax
from glif_jax import surrogate

# A new surrogate shape for the registry: a Gaussian bump of unit area, d(x, width).
surrogate.register(
    "gaussian", lambda x, width: jnp.exp(-((x / width) ** 2)) / (width * jnp.sqrt(jnp.pi)), 0.5)


class AdaptiveState(NamedTuple):
    """What the neuron carries from one step to the next, each ``[B, C]``."""

    membrane: jax.Array
    spike: jax.Array
    adaptation: jax.Array


def initial_params(channels: int) -> dict[str, jax.Array]:
    """Logits of ``tau, v_th, rho, kappa`` per channel (sigmoid = 0.25, 0.5, 0.8, 0.5 here)."""
    def logit(value: float) -> jax.Array:
        return jnp.full((channels,), jnp.log(value / (1 - value)))

    return {"tau": logit(0.25), "v_th": logit(0.5), "rho": logit(0.8), "kappa": logit(0.5)}


def adaptive_lif(params: dict[str, jax.Array], inputs: jax.Array,
                 spike_function: str | surrogate.Surrogate = "rectangular") -> jax.Array:
    """Adaptive-threshold LIF spikes ``[T, B, C]`` from input ``[T, B, C]`` (zero initial state)."""
    p = glif_jax.constrained(params)        # sigmoid of every logit

    def step(state: AdaptiveState, x_t: jax.Array) -> tuple[AdaptiveState, jax.Array]:
        membrane = p["tau"] * state.membrane * (1 - state.spike) + x_t
        adaptation = p["rho"] * state.adaptation + (1 - p["rho"]) * state.spike
        threshold = p["v_th"] + p["kappa"] * adaptation
        spike = surrogate.heaviside(membrane - threshold, spike_function)
        return AdaptiveState(membrane, spike, adaptation), spike

    zeros = jnp.zeros_like(inputs[0])
    _, spikes = jax.lax.scan(step, AdaptiveState(zeros, zeros, zeros), inputs)
    return spikes


def rate_loss(params: dict[str, jax.Array], inputs: jax.Array, target_rates: jax.Array,
              spike_function: str | surrogate.Surrogate) -> jax.Array:
    """Mean squared distance between each channel's firing rate and its target rate."""
    spikes = adaptive_lif(params, inputs, spike_function)
    rates = jnp.mean(spikes, axis=(0, 1))     # over time and batch: one rate per channel
    return jnp.mean((rates - target_rates) ** 2)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps")
    parser.add_argument("--time-steps", type=int, default=8, help="T")
    parser.add_argument("--batch", type=int, default=32, help="B")
    parser.add_argument("--channels", type=int, default=16, help="C")
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--surrogate", default="gaussian", choices=surrogate.names(),
                        help="surrogate derivative of the spike")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    spike_function = surrogate.get(args.surrogate)
    inputs = jax.random.normal(jax.random.PRNGKey(args.seed), (args.time_steps, args.batch, args.channels))
    params = initial_params(args.channels)

    # 1. Sanity check: without adaptation the new neuron is the library's LIF, spike for spike.
    lif_params = {"tau": params["tau"], "v_th": params["v_th"]}
    no_kappa = {**params, "kappa": jnp.full_like(params["kappa"], -jnp.inf)}   # sigmoid(-inf) = 0
    without_adaptation = adaptive_lif(no_kappa, inputs)
    library_lif = glif_jax.glif(lif_params, inputs, kind="lif")
    mismatches = int(jnp.sum(without_adaptation != library_lif))
    print(f"kappa = 0 vs glif_jax.glif(kind='lif'): {mismatches} of {inputs.size} spikes differ")

    # 2. Gradients flow through the spikes: the surrogate gives every parameter a gradient,
    #    where the true derivative of the step function is zero almost everywhere.
    target_rates = jnp.linspace(0.05, 0.45, args.channels)   # a different target per channel
    loss_and_grad = jax.jit(jax.value_and_grad(rate_loss), static_argnums=3)
    loss_before, grads = loss_and_grad(params, inputs, target_rates, spike_function)
    norms = {name: float(jnp.linalg.norm(g)) for name, g in grads.items()}
    print("gradient norms:", ", ".join(f"{name} {norm:.3g}" for name, norm in norms.items()))

    # 3. Train the neuron's parameters (and nothing else) towards the target rates.
    optimizer = optax.adam(args.learning_rate)
    opt_state = optimizer.init(params)

    @jax.jit
    def train_step(params, opt_state):
        loss, grads = jax.value_and_grad(rate_loss)(params, inputs, target_rates, spike_function)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def channel_rates(params):
        return jnp.mean(adaptive_lif(params, inputs, spike_function), axis=(0, 1))

    rates_before = channel_rates(params)
    for _ in range(args.steps):
        params, opt_state, _ = train_step(params, opt_state)
    loss_after = float(rate_loss(params, inputs, target_rates, spike_function))
    rates_after = channel_rates(params)
    rate_before, rate_after = float(jnp.mean(rates_before)), float(jnp.mean(rates_after))

    values = glif_jax.constrained(params)
    print(f"firing rate (mean over channels): {rate_before:.4f} -> {rate_after:.4f}")
    print(f"channel rates from {float(rates_before.min()):.3f}..{float(rates_before.max()):.3f} "
          f"to {float(rates_after.min()):.3f}..{float(rates_after.max()):.3f} "
          f"(targets {float(target_rates[0]):.3f}..{float(target_rates[-1]):.3f})")
    print(f"loss: {float(loss_before):.6f} -> {loss_after:.6f} after {args.steps} adam steps")
    print("learned (channel mean): " + ", ".join(f"{name} {float(jnp.mean(v)):.3f}" for name, v in values.items()))
    return {"mismatches": mismatches, "loss_before": float(loss_before), "loss_after": loss_after,
            "rate_before": rate_before, "rate_after": rate_after, **{f"grad_{k}": v for k, v in norms.items()}}


if __name__ == "__main__":
    main()

"""Spike statistics per GLIF layer: firing rate, silent and saturated channels.

Every GLIF layer sows ``rates`` into the ``"spike_stats"`` collection when that collection
is mutable: the mean spike per time step and channel over the batch (and space), ``[T, C]``.
From it, per layer:

- ``rate``: the layer's mean firing rate (spikes per neuron per time step), mean over T and C;
- ``silent_fraction``: fraction of channels that never fired in the batch (rate 0 at every
  time step);
- ``saturated_fraction``: fraction of channels that fired everywhere in the batch (rate 1
  at every time step).

Everything here except :func:`firing_rates` is pure ``jax.numpy`` and jit-friendly, so it
can run inside a train or eval step at the cost of a few reductions per layer.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from glif_jax.analysis.naming import readable_names

SPIKE_STATS = "spike_stats"
RATES = "rates"
METRIC_PREFIX = "spikes/"
NETWORK = "network"
STATISTICS = ("rate", "silent_fraction", "saturated_fraction")
_SATURATION_TOLERANCE = 1e-6   # a rate within this of 1 counts as 1 (float32 means of ones)


def sown_rates(spike_stats: Mapping[str, Any]) -> dict[str, jax.Array]:
    """``{layer path: rates [T, C]}`` from a ``"spike_stats"`` collection (or a variables
    dict holding one), in the collection's key order."""
    if isinstance(spike_stats, Mapping) and SPIKE_STATS in spike_stats:
        spike_stats = spike_stats[SPIKE_STATS]
    found: dict[str, jax.Array] = {}

    def walk(tree: Any, prefix: str) -> None:
        if not isinstance(tree, Mapping):
            return
        for key, value in tree.items():
            path = f"{prefix}/{key}" if prefix else str(key)
            if key == RATES:
                if isinstance(value, (tuple, list)):  # sown with Flax's default tuple accumulation
                    value = value[-1]
                found[prefix or RATES] = value
            else:
                walk(value, path)

    walk(spike_stats, "")
    return found


def layer_statistics(rates: jax.Array) -> dict[str, jax.Array]:
    """``rate``, ``silent_fraction``, ``saturated_fraction`` (float32 scalars) of one layer's ``[T, C]`` rates."""
    rates = jnp.asarray(rates, jnp.float32)
    if rates.ndim != 2:
        raise ValueError(f"rates: expected [T, C] mean spikes per time step and channel, got shape {rates.shape}")
    silent = jnp.all(rates <= 0.0, axis=0)
    saturated = jnp.all(rates >= 1.0 - _SATURATION_TOLERANCE, axis=0)
    return {
        "rate": jnp.mean(rates),
        "silent_fraction": jnp.mean(silent.astype(jnp.float32)),
        "saturated_fraction": jnp.mean(saturated.astype(jnp.float32)),
    }


def spike_summary(spike_stats: Mapping[str, Any]) -> dict[str, dict[str, jax.Array]]:
    """``{layer name: {"rate", "silent_fraction", "saturated_fraction"}}`` for every sown layer.

    Layer names are the readable short names of :mod:`glif_jax.analysis.naming`
    (``"stem"``, ``"s1b1.n1"``); order is the collection's (sorted under ``jit``).
    """
    rates = sown_rates(spike_stats)
    return {name: layer_statistics(value) for name, value in zip(readable_names(list(rates)), rates.values())}


def spike_metrics(spike_stats: Mapping[str, Any], prefix: str = METRIC_PREFIX) -> dict[str, jax.Array]:
    """Flat scalar metrics for logging: ``"spikes/<layer>/<statistic>"`` for every layer plus
    ``"spikes/network/rate"`` (mean of the layers' rates) and ``"spikes/network/silent_fraction"``,
    ``"spikes/network/saturated_fraction"`` (over all channels of all layers).

    Returns ``{}`` when nothing was sown (the collection was not mutable).
    """
    rates = sown_rates(spike_stats)
    if not rates:
        return {}
    names = readable_names(list(rates))
    per_layer = [layer_statistics(value) for value in rates.values()]
    channels = [np.shape(value)[-1] for value in rates.values()]
    metrics: dict[str, jax.Array] = {}
    for name, statistics in zip(names, per_layer):
        for statistic, number in statistics.items():
            metrics[f"{prefix}{name}/{statistic}"] = number

    def channel_weighted(statistic: str) -> jax.Array:
        weighted = sum(stats[statistic] * count for stats, count in zip(per_layer, channels))
        return weighted / sum(channels)

    metrics[f"{prefix}{NETWORK}/rate"] = jnp.mean(jnp.stack([stats["rate"] for stats in per_layer]))
    metrics[f"{prefix}{NETWORK}/silent_fraction"] = channel_weighted("silent_fraction")
    metrics[f"{prefix}{NETWORK}/saturated_fraction"] = channel_weighted("saturated_fraction")
    return metrics


def firing_rates(model: nn.Module, variables: Mapping[str, Any], inputs: Any, **kwargs: Any) -> dict[str, np.ndarray]:
    """Runs ``model`` on one batch in eval mode and returns ``{layer path: rates [T, C]}`` (NumPy).

    ``kwargs`` go to the model's call (``train=False`` by default, i.e. tdBN on running
    statistics). Layer paths are those of :func:`glif_jax.analysis.network_order`.
    """
    kwargs.setdefault("train", False)

    @jax.jit
    def run(variables, inputs):
        _, state = model.apply(variables, inputs, mutable=[SPIKE_STATS], **kwargs)
        return sown_rates(state)

    return {path: np.asarray(value) for path, value in jax.device_get(run(dict(variables), inputs)).items()}

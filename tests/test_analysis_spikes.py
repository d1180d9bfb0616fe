"""glif_jax.analysis spike statistics against NumPy on known spikes (the GLIF paper's neuron equations spikes
are 0/1, time first ``[T, B, ..., C]``).

Definitions checked: rate = mean spike over time, batch, positions and channels; a channel
is silent when it never fired in the batch, saturated when it fired at every time step,
example and position.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glif_jax.analysis import firing_rates, layer_statistics, sown_rates, spike_metrics, spike_summary
from glif_jax.layers import GLIF

T, B, H, W = 3, 4, 2, 2


def known_spikes(channels: int, silent: list[int], saturated: list[int], seed: int) -> np.ndarray:
    """Random 0/1 spikes [T, B, H, W, C] with the given channels forced silent / saturated; every
    other channel fires somewhere and misses somewhere (so it is neither)."""
    rng = np.random.default_rng(seed)
    spikes = (rng.random((T, B, H, W, channels)) < 0.4).astype(np.float32)
    spikes[0, 0, 0, 0, :] = 1.0
    spikes[-1, -1, -1, -1, :] = 0.0
    spikes[..., silent] = 0.0
    spikes[..., saturated] = 1.0
    return spikes


def numpy_statistics(spikes: np.ndarray) -> dict[str, float]:
    channels = spikes.shape[-1]
    per_channel = spikes.reshape(-1, channels)
    return {
        "rate": float(spikes.mean()),
        "silent_fraction": float(np.mean(per_channel.max(axis=0) == 0)),
        "saturated_fraction": float(np.mean(per_channel.min(axis=0) == 1)),
    }


def rates_of(spikes: np.ndarray) -> np.ndarray:
    """What a GLIF layer sows: mean over batch and positions, [T, C]."""
    return spikes.mean(axis=tuple(range(1, spikes.ndim - 1)))


SPIKES = {
    "stem/neuron": known_spikes(5, silent=[1], saturated=[], seed=0),
    "stage1_block1/neuron1": known_spikes(8, silent=[0, 6], saturated=[3], seed=1),
    "stage1_block1/neuron_out": known_spikes(4, silent=[], saturated=[0, 1, 2], seed=2),
}


def collection() -> dict:
    """A "spike_stats" collection as Flax nests it: module path -> {"rates": [T, C]}."""
    return {
        "stem": {"neuron": {"rates": jnp.asarray(rates_of(SPIKES["stem/neuron"]))}},
        "stage1_block1": {
            "neuron1": {"rates": jnp.asarray(rates_of(SPIKES["stage1_block1/neuron1"]))},
            "neuron_out": {"rates": jnp.asarray(rates_of(SPIKES["stage1_block1/neuron_out"]))},
        },
    }


def test_spike_summary_matches_numpy_on_known_spikes():
    summary = spike_summary({"spike_stats": collection()})
    names = {"stem/neuron": "stem", "stage1_block1/neuron1": "s1b1.n1", "stage1_block1/neuron_out": "s1b1.out"}
    assert set(summary) == set(names.values())
    for path, name in names.items():
        expected = numpy_statistics(SPIKES[path])
        for statistic, value in expected.items():
            assert float(summary[name][statistic]) == pytest.approx(value, abs=1e-6), (name, statistic)
    assert float(summary["s1b1.n1"]["silent_fraction"]) == pytest.approx(2 / 8)
    assert float(summary["s1b1.out"]["saturated_fraction"]) == pytest.approx(3 / 4)


def test_a_channel_silent_or_saturated_at_only_some_time_steps_is_neither():
    rates = np.array([[0.0, 1.0, 0.0], [0.5, 1.0, 0.0], [0.0, 0.99, 0.0]], np.float32)  # [T=3, C=3]
    statistics = layer_statistics(rates)
    assert float(statistics["silent_fraction"]) == pytest.approx(1 / 3)      # only channel 2
    assert float(statistics["saturated_fraction"]) == pytest.approx(0.0)     # channel 1 misses at t=3
    with pytest.raises(ValueError, match=r"\[T, C\]"):
        layer_statistics(np.zeros(3))


def test_spike_metrics_are_flat_scalars_and_jit_friendly():
    metrics = jax.jit(spike_metrics)(collection())
    expected_names = {f"spikes/{layer}/{statistic}" for layer in ("stem", "s1b1.n1", "s1b1.out", "network")
                      for statistic in ("rate", "silent_fraction", "saturated_fraction")}
    assert set(metrics) == expected_names
    assert all(np.shape(value) == () for value in metrics.values())
    assert float(metrics["spikes/s1b1.n1/rate"]) == pytest.approx(SPIKES["stage1_block1/neuron1"].mean(), abs=1e-6)
    layer_rates = [spikes.mean() for spikes in SPIKES.values()]
    assert float(metrics["spikes/network/rate"]) == pytest.approx(np.mean(layer_rates), abs=1e-6)
    all_channels = np.concatenate([spikes.reshape(-1, spikes.shape[-1]) for spikes in SPIKES.values()], axis=1)
    assert float(metrics["spikes/network/silent_fraction"]) == pytest.approx(np.mean(all_channels.max(0) == 0))
    assert float(metrics["spikes/network/saturated_fraction"]) == pytest.approx(np.mean(all_channels.min(0) == 1))
    assert spike_metrics({}) == {}


class TwoGLIFNet(nn.Module):
    """Dense -> GLIF -> Dense -> GLIF on [T, B, F]; returns both spike trains."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train
        first = GLIF(name="first")(nn.Dense(6, name="dense1")(x))
        second = GLIF(name="second")(nn.Dense(3, name="dense2")(first))
        return first, second


def test_rates_sown_by_real_glif_layers_and_firing_rates_match_the_spikes():
    model = TwoGLIFNet()
    inputs = 3.0 * jax.random.normal(jax.random.PRNGKey(0), (T, B, 5))
    variables = model.init(jax.random.PRNGKey(1), inputs)
    (first, second), state = model.apply(variables, inputs, mutable=["spike_stats"])
    rates = sown_rates(state)
    assert list(rates) == ["first", "second"]
    np.testing.assert_allclose(rates["first"], np.asarray(first).mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(rates["second"], np.asarray(second).mean(axis=1), atol=1e-6)
    measured = firing_rates(model, variables, inputs)
    np.testing.assert_allclose(measured["second"], np.asarray(second).mean(axis=1), atol=1e-6)
    summary = spike_summary(state)
    for name, spikes in (("first", first), ("second", second)):
        expected = numpy_statistics(np.asarray(spikes))
        assert float(summary[name]["rate"]) == pytest.approx(expected["rate"], abs=1e-6)
        assert float(summary[name]["silent_fraction"]) == pytest.approx(expected["silent_fraction"])

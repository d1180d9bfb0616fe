"""Analysis of trained GLIF networks (floor 3; the paper's appendix A.1): learned gates and primitives per
layer, spike statistics, and the figures of ``glif-plot``.

    from glif_jax import analysis
    order = analysis.network_order(model, jnp.zeros((1, 32, 32, 3)), train=False)
    layers = analysis.neuron_layers(variables["params"], order)       # values after the sigmoid
    analysis.values_table(layers).to_csv("values.csv")                # tidy, one row per value
    figure = analysis.plot_gates(layers)                              # matplotlib Figure

    metrics = analysis.spike_metrics(spike_stats)   # in a step: "spikes/<layer>/rate", ...

Importing this package does not import matplotlib or pandas; the plotting functions load
matplotlib on first use.
"""

from glif_jax.analysis.extraction import NeuronLayer, network_order, neuron_layers
from glif_jax.analysis.initial import InitialDistribution, initial_distributions
from glif_jax.analysis.naming import PARAMETER_LABELS, readable_names, short_layer_name
from glif_jax.analysis.spikes import firing_rates, layer_statistics, sown_rates, spike_metrics, spike_summary
from glif_jax.analysis.tables import rates_table, summary_table, values_table, write_table

_PLOTS = {
    "plot_gates": "glif_jax.analysis.plots.distributions",
    "plot_primitives": "glif_jax.analysis.plots.distributions",
    "plot_conductance": "glif_jax.analysis.plots.distributions",
    "plot_evolution": "glif_jax.analysis.plots.evolution",
    "plot_firing_rates": "glif_jax.analysis.plots.firing",
    "save_figure": "glif_jax.analysis.plots.style",
    "write_report": "glif_jax.analysis.report",
    "ReportOptions": "glif_jax.analysis.report",
}


def __getattr__(name: str):
    if name in _PLOTS:
        import importlib

        return getattr(importlib.import_module(_PLOTS[name]), name)
    raise AttributeError(f"module 'glif_jax.analysis' has no attribute {name!r}")


__all__ = [
    "InitialDistribution",
    "NeuronLayer",
    "PARAMETER_LABELS",
    "firing_rates",
    "initial_distributions",
    "layer_statistics",
    "network_order",
    "neuron_layers",
    "rates_table",
    "readable_names",
    "short_layer_name",
    "sown_rates",
    "spike_metrics",
    "spike_summary",
    "summary_table",
    "values_table",
    "write_table",
    *_PLOTS,
]

"""Distributions over channels of the learned gates and primitives, per layer (the paper's
Fig. 1 and Fig. 2, appendix A.1), and of a per-time-step parameter (GLIF's conductance) per
time step. Which parameters are gates, primitives or per time step, and how they are named,
comes from each layer's neuron."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from glif_jax.analysis.extraction import NeuronLayer
from glif_jax.analysis.initial import InitialDistribution
from glif_jax.analysis.naming import ParameterLabel, label_of
from glif_jax.analysis.plots import style

Initial = Mapping[str, InitialDistribution] | None


def _labels(layers: Sequence[NeuronLayer], group: str | None = None, per_time_step: bool = False
            ) -> list[ParameterLabel]:
    """The labels of the layers' neuron parameters of ``group`` ("gate" | "primitive" | None: any)."""
    labels: dict[str, ParameterLabel] = {}
    for layer in layers:
        for parameter in layer.parameters():
            label = label_of(parameter)
            if label.per_time_step == per_time_step and group in (None, label.group):
                labels.setdefault(label.name, label)
    return list(labels.values())


def _parameter_figure(layers: Sequence[NeuronLayer], labels: Sequence[ParameterLabel], *, title: str,
                      initial: Initial, note: str | None, what: str) -> Figure:
    if not labels:
        raise ValueError(f"layers: their neuron has no {what}")
    layer_names = [layer.name for layer in layers]
    layer_wise = all(layer.channels == 1 for layer in layers)
    if layer_wise:
        title = title.replace("distribution over channels", "one value per layer (layer-wise)")
    figure, axes = style.new_figure(len(labels), 1, layers=len(layers))
    handles = []
    for ax, label in zip(axes[:, 0], labels):
        name = label.name
        start = (initial or {}).get(name)
        style.mark_panel(ax, name)
        ax.set_title(label.title + (f"   ({style.initial_text(start)})" if start else ""), loc="left",
                     fontsize="medium")
        ax.set_ylabel(label.axis_label)
        samples = [np.ravel(layer.values.get(name, np.empty(0))) for layer in layers]
        handles += style.distribution_panel(ax, samples, layer_names, initial=start,
                                            item="layer value" if layer_wise else "channel")
    axes[-1, 0].set_xlabel(style.layer_axis_label(layer_names))
    style.suptitle(figure, title + (f"\n({note})" if note else ""))
    style.figure_legend(figure, handles)
    return figure


def plot_gates(layers: Sequence[NeuronLayer], *, initial: Initial = None, run_label: str = "",
               hard_gates: bool = False) -> Figure:
    """One panel per gate of the layers' neuron (GLIF: α, β, γ), layers along x, the distribution
    over channels per layer, the initial range shaded. Returns the figure; a neuron without
    gates is a ``ValueError``."""
    note = "hard gates: the forward pass uses 1[value > 0.5]" if hard_gates else None
    title = "Learned gates per layer: distribution over channels" + (f"\n{run_label}" if run_label else "")
    return _parameter_figure(layers, _labels(layers, "gate"), title=title, initial=initial, note=note,
                             what="gates")


def plot_primitives(layers: Sequence[NeuronLayer], *, initial: Initial = None, run_label: str = "") -> Figure:
    """One panel per primitive of the layers' neuron that is not per time step (GLIF: τ_exp,
    τ_lin, V_th, V_re), same style as :func:`plot_gates`, the initial value dashed. Returns the figure."""
    title = "Learned primitives per layer: distribution over channels" + (f"\n{run_label}" if run_label else "")
    return _parameter_figure(layers, _labels(layers, "primitive"), title=title, initial=initial, note=None,
                             what="primitives")


def plot_neuron_weights(layers: Sequence[NeuronLayer], *, initial: Initial = None, run_label: str = "") -> Figure:
    """One panel per parameter a neuron declares in the optimiser group "weights" (GLIF has none),
    same style as :func:`plot_primitives`. Returns the figure."""
    title = "Learned neuron weights per layer: distribution over channels" + (f"\n{run_label}" if run_label else "")
    return _parameter_figure(layers, _labels(layers, "weight"), title=title, initial=initial, note=None,
                             what="parameters in the group 'weights'")


def per_time_step_labels(layers: Sequence[NeuronLayer]) -> list[ParameterLabel]:
    """The layers' neuron parameters with a leading time axis (GLIF: ``cond``)."""
    return _labels(layers, per_time_step=True)


def plot_conductance(layers: Sequence[NeuronLayer], *, initial: Initial = None, run_label: str = "",
                     name: str | None = None) -> Figure:
    """A per-time-step parameter (GLIF's conductance g^t; ``name``, default the neuron's first
    one): per layer, one box per time step (distribution over channels), the initial value
    dashed. Returns the figure (1 panel)."""
    labels = {label.name: label for label in per_time_step_labels(layers)}
    name = name or next(iter(labels), "cond")
    label = labels.get(name) or ParameterLabel(name, name, name, "")
    layer_names = [layer.name for layer in layers]
    figure, axes = style.new_figure(1, 1, layers=len(layers), panel_height=3.6)
    ax = axes[0, 0]
    style.mark_panel(ax, name)
    ax.set_title(label.title + " — one box per time step", loc="left", fontsize="medium")
    ax.set_ylabel(label.axis_label)
    conductances = [np.asarray(layer.values[name]) for layer in layers if name in layer.values]
    if len(conductances) != len(layers) or not conductances:
        style.missing_panel(ax, f"{label.symbol} is not a parameter of this neuron kind")
        style.layer_axis(ax, layer_names)
    else:
        time_steps = conductances[0].shape[0]
        width = 0.8 / time_steps
        colors = [_time_color(t, time_steps) for t in range(time_steps)]
        for t in range(time_steps):
            positions = np.arange(len(layers)) - 0.4 + width * (t + 0.5)
            data = [np.ravel(values[t]) for values in conductances]
            ax.boxplot(data, positions=positions, widths=width * 0.85, showfliers=False, patch_artist=True,
                       boxprops=dict(facecolor=colors[t], edgecolor="black", linewidth=0.6),
                       medianprops=dict(color="black", linewidth=1.0), whiskerprops=dict(linewidth=0.6),
                       capprops=dict(linewidth=0.6), manage_ticks=False)
        start = (initial or {}).get(name)
        handles = [Patch(facecolor=colors[t], edgecolor="black", label=f"t = {t + 1}") for t in range(time_steps)]
        handles += style.initial_mark(ax, start)
        if start:
            ax.set_title(f"{label.title} — one box per time step   ({style.initial_text(start)})", loc="left",
                         fontsize="medium")
        ax.grid(axis="y", alpha=0.3)
        style.layer_axis(ax, layer_names)
        style.figure_legend(figure, handles)
    style.suptitle(figure, f"Learned {label.symbol} per layer and time step\ndistribution over channels "
                    "(box: median, quartiles; whiskers: 1.5 IQR)" + (f"\n{run_label}" if run_label else ""))
    return figure


def _time_color(t: int, time_steps: int):
    from matplotlib import colormaps

    return colormaps["plasma"](0.3 + 0.65 * t / max(time_steps - 1, 1))

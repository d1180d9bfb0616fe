"""How the learned parameters moved during training: per layer, the median and interquartile
range over channels at every checkpoint, from the initialisation (x = 0) on."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from glif_jax.analysis.extraction import NeuronLayer
from glif_jax.analysis.initial import InitialDistribution
from glif_jax.analysis.naming import LAYER_NAME_KEY, label_of
from glif_jax.analysis.plots import style

Snapshot = tuple[float, Sequence[NeuronLayer]]   # (x: epoch or step, layers of that checkpoint)


def _quartiles(values: np.ndarray) -> tuple[float, float, float]:
    q1, median, q3 = np.quantile(np.asarray(values, np.float64).reshape(-1), [0.25, 0.5, 0.75])
    return float(q1), float(median), float(q3)


def plot_evolution(snapshots: Sequence[Snapshot], *, initial: Mapping[str, InitialDistribution] | None = None,
                   x_label: str = "epoch", run_label: str = "") -> Figure:
    """One panel per parameter of the neuron (per-time-step ones pooled over time steps), one line per
    layer: median over channels vs ``x`` with the interquartile range as error bars (layers
    dodged slightly along x); with ``initial`` the lines start at x = 0 from the initial
    distribution (known by construction).

    ``snapshots``: ``(x, layers)`` per checkpoint, any order; the layers of every snapshot
    must have the same names (one model). Returns the figure.
    """
    if not snapshots:
        raise ValueError("snapshots: expected at least one (x, layers) checkpoint")
    snapshots = sorted(snapshots, key=lambda snapshot: snapshot[0])
    reference = [layer.name for layer in snapshots[0][1]]
    for x, layers in snapshots:
        if [layer.name for layer in layers] != reference:
            raise ValueError(f"snapshots: the checkpoint at {x_label} {x:g} has other layers than the first one")
    labels = [label_of(parameter) for parameter in snapshots[0][1][0].parameters()]
    names = [label.name for label in labels]
    columns = min(4, len(names))
    rows = -(-len(names) // columns)
    figure, axes = style.new_figure(rows, columns, layers=len(reference), panel_height=2.9,
                                    width=3.6 * columns + 2.2)
    colors = colormaps["viridis"](np.linspace(0.0, 0.92, len(reference)))
    xs_all = [0.0] * bool(initial) + [float(x) for x, _ in snapshots]
    spacing = (max(xs_all) - min(xs_all)) / max(len(xs_all) - 1, 1) or 1.0
    offsets = spacing * 0.3 * (np.linspace(-0.5, 0.5, len(reference)) if len(reference) > 1 else np.zeros(1))
    for ax, label in zip(axes.ravel(), labels):
        name = label.name
        style.mark_panel(ax, name)
        pooled = " (pooled over t)" if label.per_time_step else ""
        ax.set_title(f"{label.title}{pooled}", loc="left", fontsize="small", wrap=True)
        ax.set_ylabel(label.axis_label)
        start = (initial or {}).get(name)
        for index, color in enumerate(colors):
            xs, q1s, medians, q3s = [], [], [], []
            if start is not None:
                xs.append(0.0)
                q1s.append(start.lower_quartile)
                medians.append(start.median)
                q3s.append(start.upper_quartile)
            for x, layers in snapshots:
                q1, median, q3 = _quartiles(layers[index].values[name])
                xs.append(float(x))
                q1s.append(q1)
                medians.append(median)
                q3s.append(q3)
            xs = np.asarray(xs) + offsets[index]
            medians = np.asarray(medians)
            spread = np.stack([medians - np.asarray(q1s), np.asarray(q3s) - medians])
            ax.errorbar(xs, medians, yerr=spread, color=color, marker="o", markersize=3, linewidth=1.2,
                        elinewidth=0.8, capsize=1.5, alpha=0.9)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(f"{x_label} (0 = initialisation)" if initial else x_label)
    handles = [Line2D([], [], color=color, marker="o", markersize=3, label=name)
               for name, color in zip(reference, colors)]
    handles += [Line2D([], [], color="gray", marker="o", markersize=3, label="median over channels"),
                Line2D([], [], color="gray", marker="|", linestyle="", markersize=8,
                       label="interquartile range (bars;\nlayers shifted slightly in x)")]
    figure.legend(handles=handles, loc="outside right center", fontsize="small", frameon=False,
                  title="layer (input → output)", title_fontsize="small")
    if style.uses_abbreviations(reference):
        figure.supxlabel("layers: " + LAYER_NAME_KEY, fontsize="x-small", color="dimgray")
    style.suptitle(figure, "Evolution of the learned neuron parameters during training, per layer"
                    + (f"\n{run_label}" if run_label else ""))
    return figure

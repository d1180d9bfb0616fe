"""Firing rates per layer on a batch of data: per time step, per channel, silent and saturated
channels (from the ``[T, C]`` rates every GLIF layer sows; see :mod:`glif_jax.analysis.spikes`)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from glif_jax.analysis.naming import readable_names
from glif_jax.analysis.plots import style
from glif_jax.analysis.spikes import layer_statistics

MAX_ANNOTATED_CELLS = 160


def plot_firing_rates(rates: Mapping[str, np.ndarray], order: Sequence[str] | None = None, *,
                      run_label: str = "", batch_label: str = "") -> Figure:
    """Three panels sharing the layer axis (network order):

    1. heat map of the mean rate over channels, per time step (rows) and layer (columns);
    2. distribution over channels of the time-averaged rate per layer (box + strip);
    3. fraction of silent (never fired) and saturated (fired at every step and position)
       channels per layer.

    ``rates``: ``{layer path: [T, C]}`` mean spikes per time step and channel over the batch.
    Returns the figure.
    """
    paths = list(order) if order is not None else list(rates)
    missing = [path for path in paths if path not in rates]
    if missing:
        raise ValueError(f"order: no rates for layers {missing}")
    paths += [path for path in rates if path not in paths]
    names = readable_names(paths)
    values = [np.asarray(rates[path], np.float64) for path in paths]
    time_steps = values[0].shape[0]
    figure, axes = style.new_figure(3, 1, layers=len(paths), panel_height=2.6)
    heat_ax, box_ax, fraction_ax = axes[:, 0]

    style.mark_panel(heat_ax, "rate_per_time_step")
    per_step = np.stack([value.mean(axis=1) for value in values], axis=1)  # [T, layers]
    image = heat_ax.imshow(per_step, aspect="auto", origin="lower", cmap="magma", vmin=0.0,
                           vmax=max(float(per_step.max()), 1e-3), interpolation="nearest",
                           extent=(-0.5, len(paths) - 0.5, 0.5, time_steps + 0.5))
    if per_step.size <= MAX_ANNOTATED_CELLS:
        for t in range(time_steps):
            for index in range(len(paths)):
                level = per_step[t, index] / max(float(per_step.max()), 1e-3)
                heat_ax.text(index, t + 1, f"{per_step[t, index]:.2f}", ha="center", va="center", fontsize=6,
                             color="black" if level > 0.6 else "white")
    heat_ax.set_yticks(np.arange(1, time_steps + 1))
    heat_ax.set_ylabel("time step t")
    heat_ax.set_title("mean firing rate over channels, per time step", loc="left", fontsize="medium")
    colorbar = figure.colorbar(image, ax=heat_ax, location="top", pad=0.02, fraction=0.08, aspect=60, shrink=0.4,
                               anchor=(1.0, 0.0))
    colorbar.set_label("mean spikes per neuron per time step", fontsize="x-small")
    colorbar.ax.tick_params(labelsize="x-small")

    style.mark_panel(box_ax, "rate_per_channel")
    handles = style.distribution_panel(box_ax, [value.mean(axis=0) for value in values], names)
    box_ax.set_ylabel("firing rate\n(mean over t)")
    box_ax.set_title("firing rate per channel (mean over time steps, batch and positions)", loc="left",
                     fontsize="medium")

    style.mark_panel(fraction_ax, "silent_saturated")
    statistics = [layer_statistics(value) for value in values]
    silent = np.array([float(stats["silent_fraction"]) for stats in statistics])
    saturated = np.array([float(stats["saturated_fraction"]) for stats in statistics])
    positions = np.arange(len(paths))
    handles.append(fraction_ax.bar(positions - 0.2, 100 * silent, width=0.4, color="#636363",
                                   label="silent channel:\nnever fired"))
    handles.append(fraction_ax.bar(positions + 0.2, 100 * saturated, width=0.4, color="#e6550d",
                                   label="saturated channel: fired at\nevery time step and position"))
    fraction_ax.set_ylim(0, max(5.0, 100 * float(max(silent.max(), saturated.max())) * 1.15))
    if not silent.any() and not saturated.any():
        style.missing_panel(fraction_ax, "no silent and no saturated channel in any layer")
    fraction_ax.set_ylabel("channels (%)")
    fraction_ax.set_title("silent and saturated channels", loc="left", fontsize="medium")
    fraction_ax.grid(axis="y", alpha=0.3)
    style.layer_axis(fraction_ax, names)
    for ax in (heat_ax, box_ax):
        ax.tick_params(labelbottom=False)
    style.figure_legend(figure, handles)

    style.suptitle(figure, "Firing rates per layer" + (f" on {batch_label}" if batch_label else "")
                    + (f"\n{run_label}" if run_label else ""))
    return figure

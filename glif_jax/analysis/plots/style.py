"""Shared drawing pieces: figures without pyplot (no global state, Agg), the distribution
panel (box + strip over channels, layers along x), the initial-value marks, saving.

Every data panel gets the matplotlib label ``"panel:<what>"`` (``ax.get_label()``), so a
figure's panels can be told apart from colour bars.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from glif_jax.analysis.initial import InitialDistribution
from glif_jax.analysis.naming import LAYER_NAME_KEY

PANEL_PREFIX = "panel:"
MEDIAN_LABEL = "_median"   # the median lines of a distribution panel (hidden from legends)
BOX_COLOR = "#9ecae1"
STRIP_COLOR = "#08306b"
INITIAL_COLOR = "#d62728"
DPI = 150
FORMATS = ("png", "pdf")


def new_figure(rows: int, columns: int, *, layers: int, panel_height: float = 2.7,
               sharex: bool = True, width: float | None = None) -> tuple[Figure, np.ndarray]:
    """A figure of ``rows x columns`` panels, wide enough for ``layers`` tick labels per panel
    (or ``width`` inches)."""
    width = width or max(7.0, 1.8 + 0.42 * layers) * columns ** 0.8
    figure = Figure(figsize=(width, panel_height * rows + 1.2), layout="constrained")
    axes = figure.subplots(rows, columns, sharex=sharex, squeeze=False)
    return figure, axes


def suptitle(figure: Figure, text: str) -> None:
    """The figure's title; the figure is widened when a title line would not fit (no clipping)."""
    figure.suptitle(text)
    needed = 0.105 * max(len(line) for line in text.splitlines()) + 0.4   # inches at the default 12 pt
    width, height = figure.get_size_inches()
    if width < needed:
        figure.set_size_inches(needed, height)


def mark_panel(ax: Axes, what: str) -> None:
    ax.set_label(PANEL_PREFIX + what)


def panels(figure: Figure) -> list[Axes]:
    """The data panels of a figure made here (colour bars and legends excluded)."""
    return [ax for ax in figure.axes if ax.get_label().startswith(PANEL_PREFIX)]


def layer_axis(ax: Axes, names: Sequence[str], *, label: bool = True) -> None:
    """Layers along x, in network order, one tick each."""
    ax.set_xticks(np.arange(len(names)))
    rotation = 0 if max((len(name) for name in names), default=0) * len(names) < 60 else 60
    ax.set_xticklabels(names, rotation=rotation, ha="right" if rotation else "center")
    ax.set_xlim(-0.6, len(names) - 0.4)
    if label:
        ax.set_xlabel(layer_axis_label(names))


def initial_mark(ax: Axes, initial: InitialDistribution | None) -> list:
    """Draws the initial value (dashed line) or range (shaded band); returns legend handles."""
    if initial is None:
        return []
    if initial.is_constant:
        ax.axhline(initial.low, color=INITIAL_COLOR, linestyle="--", linewidth=1.2, zorder=1)
        return [Line2D([], [], color=INITIAL_COLOR, linestyle="--", label="initial value (dashed)")]
    ax.axhspan(initial.low, initial.high, color=INITIAL_COLOR, alpha=0.15, zorder=0)
    return [Patch(color=INITIAL_COLOR, alpha=0.3, label="initial range (shaded)")]


def initial_text(initial: InitialDistribution | None) -> str:
    """``"initial 0.5"`` or ``"initial range [0.4502, 0.5498)"`` for a panel title ("" if unknown)."""
    if initial is None:
        return ""
    if initial.is_constant:
        return f"initial {initial.low:.4g}"
    return f"initial range [{initial.low:.4f}, {initial.high:.4f})"


def distribution_panel(ax: Axes, samples: Sequence[np.ndarray], names: Sequence[str], *,
                       initial: InitialDistribution | None = None, seed: int = 0,
                       item: str = "channel") -> list:
    """Box (median, quartiles, whiskers at 1.5 IQR) and a jittered strip of every ``item``,
    one column per layer; the initial value/range behind. Returns the legend handles."""
    positions = np.arange(len(samples))
    filled = [index for index, values in enumerate(samples) if np.size(values)]
    handles = initial_mark(ax, initial)
    if filled:
        boxes = ax.boxplot([np.ravel(samples[index]) for index in filled], positions=positions[filled], widths=0.6,
                           showfliers=False, patch_artist=True, zorder=2,
                           boxprops=dict(facecolor=BOX_COLOR, edgecolor="black", linewidth=0.8),
                           medianprops=dict(color="black", linewidth=1.5),
                           whiskerprops=dict(linewidth=0.8), capprops=dict(linewidth=0.8))
        for line in boxes["medians"]:
            line.set_label(MEDIAN_LABEL)
        rng = np.random.default_rng(seed)
        for index in filled:
            values = np.ravel(samples[index])
            if values.size > 1:
                ax.scatter(index + rng.uniform(-0.2, 0.2, values.size), values, s=5, color=STRIP_COLOR, alpha=0.35,
                           linewidths=0, zorder=3)
            else:  # a layer-wise value: one visible marker
                ax.scatter([index], values, s=30, color=STRIP_COLOR, zorder=3)
    handles = [Patch(facecolor=BOX_COLOR, edgecolor="black", label="median & quartiles (box), 1.5 IQR (whiskers)"),
               Line2D([], [], marker="o", linestyle="", color=STRIP_COLOR, alpha=0.6, markersize=3,
                      label=f"one {item}")] + handles
    ax.grid(axis="y", alpha=0.3)
    layer_axis(ax, names, label=False)
    return handles


def figure_legend(figure: Figure, handles: Sequence) -> None:
    """One legend right of the panels, each label once."""
    unique = {handle.get_label(): handle for handle in handles}
    if unique:
        figure.legend(handles=list(unique.values()), loc="outside right center", fontsize="small", frameon=False)


def missing_panel(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize="small", color="gray")


def uses_abbreviations(names: Sequence[str]) -> bool:
    return any(re.match(r"s\d+b\d+", name) for name in names)


def layer_axis_label(names: Sequence[str]) -> str:
    """The x label of a layer axis, with the key to abbreviated names when they are used."""
    label = "layer (network order, input → output)"
    if uses_abbreviations(names):
        label += "\n" + LAYER_NAME_KEY
    return label


def save_figure(figure: Figure, directory: str | Path, stem: str, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Writes ``directory/stem.<format>`` for each format ("png", "pdf"); returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for extension in formats:
        if extension not in FORMATS:
            raise ValueError(f"formats: expected some of {FORMATS}, got {extension!r}")
        path = directory / f"{stem}.{extension}"
        figure.savefig(path, dpi=DPI)
        written.append(path)
    return written

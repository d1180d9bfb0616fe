"""Readable names: short layer names from module paths, and what every GLIF parameter means.

Layer paths are the Flax module paths of the GLIF layers joined by ``/`` (e.g.
``stage1_block1/neuron1``); :func:`short_layer_name` turns them into axis-tick-sized names
(``s1b1.n1``), and :data:`LAYER_NAME_KEY` explains the abbreviations on the figures.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

from glif_jax.neuron import GATE_NAMES

LAYER_NAME_KEY = (
    "sXbY = stage X, block Y;  n1, n2 = 1st, 2nd neuron inside the block;\n"
    "out = neuron after the residual sum;  uK = SEW unit K"
)

_RULES = (
    (re.compile(r"stage(\d+)_block(\d+)"), r"s\1b\2"),
    (re.compile(r"neuron(\d+)"), r"n\1"),
    (re.compile(r"neuron_out"), "out"),
    (re.compile(r"unit(\d+)"), r"u\1"),
)


def short_layer_name(path: str) -> str:
    """``"stage1_block1/neuron1" -> "s1b1.n1"``, ``"stem/neuron" -> "stem"``, ``"conv2/neuron" -> "conv2"``."""
    parts = [part for part in path.split("/") if part]
    if len(parts) > 1 and parts[-1] == "neuron":
        parts = parts[:-1]
    short = []
    for part in parts:
        for pattern, replacement in _RULES:
            if pattern.fullmatch(part):
                part = pattern.sub(replacement, part)
                break
        short.append(part)
    return ".".join(short) or path


def readable_names(paths: Sequence[str]) -> list[str]:
    """Short names for ``paths``, falling back to the full path (``/`` -> ``.``) where short ones collide."""
    short = [short_layer_name(path) for path in paths]
    return [name if short.count(name) == 1 else path.replace("/", ".") for name, path in zip(short, paths)]


@dataclasses.dataclass(frozen=True)
class ParameterLabel:
    """How a GLIF parameter is shown: plain symbol, matplotlib mathtext, and its meaning (the GLIF paper's neuron equations)."""

    name: str      # the parameter's leaf name ("alpha", "v_th", ...)
    symbol: str    # plain text ("α", "V_th")
    math: str      # mathtext ("$\\alpha$", "$V_{th}$")
    meaning: str   # what the value controls

    @property
    def group(self) -> str:
        return "gate" if self.name in GATE_NAMES else "primitive"

    @property
    def title(self) -> str:
        """Panel title, e.g. ``"α: leak — exponential (1) vs linear (0)"`` in mathtext."""
        return f"{self.math}: {self.meaning}"


PARAMETER_LABELS: dict[str, ParameterLabel] = {
    label.name: label
    for label in (
        ParameterLabel("alpha", "α", r"$\alpha$", "leak — exponential (1) vs linear (0)"),
        ParameterLabel("beta", "β", r"$\beta$", "integration — conductance-scaled (1) vs plain input (0)"),
        ParameterLabel("gamma", "γ", r"$\gamma$", "reset — hard (1) vs soft (0)"),
        ParameterLabel("tau", "τ_exp", r"$\tau_{exp}$", "exponential decay factor"),
        ParameterLabel("lam", "τ_lin", r"$\tau_{lin}$", "linear decay per time step"),
        ParameterLabel("v_th", "V_th", r"$V_{th}$", "firing threshold"),
        ParameterLabel("v_re", "V_re", r"$V_{re}$", "soft-reset amount"),
        ParameterLabel("cond", "g^t", r"$g^t$", "conductance at time step t"),
    )
}
"""One label per name of :data:`glif_jax.neuron.PARAM_NAMES`, in that order."""

"""Readable names: short layer names from module paths, and what every GLIF parameter means.

Layer paths are the Flax module paths of the GLIF layers joined by ``/`` (e.g.
``stage1_block1/neuron1``); :func:`short_layer_name` turns them into axis-tick-sized names
(``s1b1.n1``), and :data:`LAYER_NAME_KEY` explains the abbreviations on the figures.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

from glif_jax.neurons import scopes
from glif_jax.neurons.glif import GATES, PRIMITIVES
from glif_jax.neurons.interface import Parameter

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
    """How a neuron parameter is shown: plain symbol, matplotlib mathtext, its meaning, its group."""

    name: str      # the parameter's leaf name ("alpha", "v_th", ...)
    symbol: str    # plain text ("α", "V_th")
    math: str      # mathtext ("$\\alpha$", "$V_{th}$")
    meaning: str   # what the value controls
    group: str = "primitive"        # "gate" | "primitive" | "weight" (the optimiser group, singular)
    constraint: str = "sigmoid"     # how the stored value maps to the value shown
    per_time_step: bool = False     # a leading time axis (GLIF's conductance)

    @property
    def title(self) -> str:
        """Panel title, e.g. ``"α: leak — exponential (1) vs linear (0)"`` in mathtext."""
        return f"{self.math}: {self.meaning}" if self.meaning else self.math

    @property
    def axis_label(self) -> str:
        """``"α (after sigmoid)"``: the value and the constraint that produced it."""
        return self.math + ("" if self.constraint == "identity" else f" (after {self.constraint})")


def label_of(parameter: Parameter) -> ParameterLabel:
    """The label of a neuron's declared :class:`~glif_jax.neurons.Parameter`."""
    return ParameterLabel(parameter.name, parameter.label, parameter.math_label, parameter.meaning,
                          group=parameter.group.rstrip("s"), constraint=parameter.constraint,
                          per_time_step=parameter.per_time_step)


def parameter_label(name: str, neuron=None) -> ParameterLabel:
    """The label of parameter ``name`` of ``neuron`` (a Neuron, NeuronConfig or name; default GLIF)."""
    resolved = scopes.resolve(neuron) if neuron is not None else None
    if resolved is None:
        return PARAMETER_LABELS.get(name) or ParameterLabel(name, name, name, "")
    try:
        return label_of(resolved.parameter(name))
    except KeyError:
        return ParameterLabel(name, name, name, "")


PARAMETER_LABELS: dict[str, ParameterLabel] = {parameter.name: label_of(parameter) for parameter in GATES + PRIMITIVES}
"""GLIF's parameters' labels, in the order of its parameters (gates, then primitives)."""

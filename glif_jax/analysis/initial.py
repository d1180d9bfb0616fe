"""Where every gate and primitive starts (the GLIF paper's neuron equations, "Initialisation"), known by construction.

Primitives start at one constant of the preset (``tau`` 0.25, ``v_th`` 0.5, ... for
"cifar"); gates start at ``sigmoid(U[-r, r))`` per entry (``r = 0.2``: values in
``[0.4502, 0.5498)``). So the starting distribution over channels is known without
re-initialising a model: its range, median and quartiles are exact population values.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

from glif_jax.layers.glif import GLIF, initial_values
from glif_jax.neuron import GATE_NAMES

DEFAULT_GATE_INIT_RANGE: float = GLIF.gate_init_range
"""The GLIF layer's default gate logit range r (gate logits ~ U[-r, r))."""


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclasses.dataclass(frozen=True)
class InitialDistribution:
    """The distribution over channels of one parameter at initialisation (values in (0, 1)).

    ``low == high`` (and median, quartiles equal) for a constant primitive; a gate's
    ``[low, high)`` is the sigmoid of the uniform logit range.
    """

    low: float
    high: float
    median: float
    lower_quartile: float
    upper_quartile: float

    @property
    def is_constant(self) -> bool:
        return self.low == self.high


def initial_distributions(
    names: tuple[str, ...],
    neuron_init: str | Mapping[str, float] = "cifar",
    *,
    gate_init_range: float = DEFAULT_GATE_INIT_RANGE,
) -> dict[str, InitialDistribution]:
    """``{name: InitialDistribution}`` for the parameter ``names`` of a model.

    Args:
      names: parameter names (from :data:`glif_jax.neuron.PARAM_NAMES`).
      neuron_init: the GLIF preset (a name of ``glif_jax.layers.PRESETS``) or explicit
        primitive values (``config.model.init``); no preset depends on T (``cond`` starts at one
        value for every step).
      gate_init_range: r of the gate logits ``U[-r, r)``.
    """
    primitives = initial_values(neuron_init)
    result = {}
    for name in names:
        if name in GATE_NAMES:
            result[name] = InitialDistribution(
                low=_sigmoid(-gate_init_range), high=_sigmoid(gate_init_range), median=0.5,
                lower_quartile=_sigmoid(-gate_init_range / 2), upper_quartile=_sigmoid(gate_init_range / 2))
        elif name in primitives:
            value = float(primitives[name])
            result[name] = InitialDistribution(value, value, value, value, value)
        else:
            raise ValueError(f"names: unknown GLIF parameter {name!r}")
    return result

"""Where every neuron parameter starts, known by construction (the GLIF paper's neuron equations, "Initialisation").

A constant parameter starts at one value (GLIF's primitives: ``tau`` 0.25, ``v_th`` 0.5, ... for
"cifar"); a uniformly initialised one at ``constraint(U[low, high))`` per entry (GLIF's gates:
``sigmoid(U[-0.2, 0.2))``, values in ``[0.4502, 0.5498)``). So the starting distribution over
channels is known without re-initialising a model: its range, median and quartiles are exact
population values (the constraints are increasing).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from glif_jax.layers import initial_values
from glif_jax.neurons import scopes
from glif_jax.neurons.glif import GATE_INIT_RANGE
from glif_jax.neurons.interface import Uniform

DEFAULT_GATE_INIT_RANGE: float = GATE_INIT_RANGE
"""GLIF's gate logit range r (gate logits ~ U[-r, r))."""


@dataclasses.dataclass(frozen=True)
class InitialDistribution:
    """The distribution over channels of one parameter at initialisation (constrained values).

    ``low == high`` (and median, quartiles equal) for a constant parameter; a uniformly
    initialised one's ``[low, high)`` is the constraint of the uniform raw range.
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
    gate_init_range: float | None = None,
    neuron: Any = None,
) -> dict[str, InitialDistribution]:
    """``{name: InitialDistribution}`` for the parameter ``names`` of a model.

    Args:
      names: parameter names of the neuron.
      neuron_init: a preset (a name of ``glif_jax.layers.PRESETS``) or explicit values
        (``config.model.init``); no preset depends on T (a per-time-step parameter starts at
        one value for every step).
      gate_init_range: r of a ``U[-r, r)`` initialisation of the gates (None: the neuron's own).
      neuron: a Neuron, NeuronConfig or name (default GLIF).
    """
    resolved = scopes.resolve(neuron) or scopes.resolve("glif")
    starts = initial_values(neuron_init, resolved)
    result = {}
    for name in names:
        if name not in starts:
            raise ValueError(f"names: unknown parameter {name!r} of neuron {resolved.name!r}")
        parameter = resolved.parameter(name)
        start = starts[name]
        if isinstance(start, Uniform):
            if gate_init_range is not None and parameter.group == "gates":
                start = Uniform(-gate_init_range, gate_init_range)

            def value(fraction: float) -> float:
                return parameter.constrain.scalar(start.low + fraction * (start.high - start.low))

            result[name] = InitialDistribution(low=value(0.0), high=value(1.0), median=value(0.5),
                                               lower_quartile=value(0.25), upper_quartile=value(0.75))
        else:
            constant = float(start)
            result[name] = InitialDistribution(constant, constant, constant, constant, constant)
    return result

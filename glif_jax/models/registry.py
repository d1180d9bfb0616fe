"""Architectures by name: ``get_spec("resnet18")`` (the paper's networks as descriptions); models are
built by :func:`glif_jax.models.get_model` or read from a config by :class:`glif_jax.models.ModelOptions`."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from glif_jax.errors import OptionError
from glif_jax.models import specs
from glif_jax.models.description import NetworkSpec, scale_widths

ARCHITECTURES: dict[str, Callable[..., NetworkSpec]] = {
    "resnet18": specs.resnet18,
    "resnet19": specs.resnet19,
    "cifarnet": specs.cifarnet,
    "resnet34": specs.resnet34,
    "ms_resnet18": specs.ms_resnet18,
    "ms_resnet34": specs.ms_resnet34,
    "wide7b": specs.wide7b,
    "tiny_convnet": specs.tiny_convnet,
}
"""Registry name -> function making the description; its keyword arguments are the model's options."""



def list_models() -> list[str]:
    """The registered model names."""
    return list(ARCHITECTURES)


def get_spec(name: str, *, width_multiplier: float = 1.0, **options: Any) -> NetworkSpec:
    """The description of model ``name`` with its ``options``.

    width_multiplier: an option of every model: scales every conv width and the hidden head
      widths (rounded half up, >= 1; :func:`~glif_jax.models.description.scale_widths`),
      e.g. 0.25 for a narrow ResNet-18 that trains on a CPU; 1.0 is the paper's network.
    options: the keyword arguments of the model's function in :mod:`glif_jax.models.specs`
      (e.g. ``width_change="1x1"`` for wide7b).
    """
    make_spec = _architecture(name)
    unknown = sorted(set(options) - set(inspect.signature(make_spec).parameters))
    if unknown:
        raise OptionError(unknown[0], f"model {name!r} has no option(s) {unknown}; "
                                      f"its options: {', '.join(model_options(name))}")
    return scale_widths(make_spec(**options), width_multiplier)


def model_options(name: str) -> dict[str, Any]:
    """Every option of model ``name`` with its default (what ``config.model.kwargs`` may set):
    the keyword-only arguments of :func:`get_spec`, then those of the model's function."""
    common = {parameter.name: parameter.default for parameter in inspect.signature(get_spec).parameters.values()
              if parameter.kind is inspect.Parameter.KEYWORD_ONLY}
    specific = {parameter.name: parameter.default
                for parameter in inspect.signature(_architecture(name)).parameters.values()}
    return {**common, **specific}


def _architecture(name: str) -> Callable[..., NetworkSpec]:
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise OptionError("name", f"unknown model {name!r}; registered models: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]

"""Models by name: ``get_model("resnet18", num_classes=10, time_steps=4)`` (the paper's architectures)."""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable, Mapping

import jax.numpy as jnp

from glif_jax.errors import OptionError
from glif_jax.models import specs
from glif_jax.models.builder import SpikingNetwork
from glif_jax.models.description import NetworkSpec, scale_widths
from glif_jax.models.options import ModelOptions
from glif_jax.neuron import NeuronConfig

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


def get_model(name: str, *, num_classes: int, time_steps: int, neuron: NeuronConfig = NeuronConfig(),
              channel_wise: bool = True, neuron_init: str | Mapping[str, Any] = "cifar", dtype: Any = jnp.float32,
              bn_axis_name: str | None = None, remat: bool = False, init: str | Mapping[str, Any] | None = None,
              **options: Any) -> SpikingNetwork:
    """Model ``name`` as a Flax module: ``module.apply(variables, x, train) -> logits [B, num_classes]``.

    x: static images ``[B, H, W, C]`` (repeated over time inside) or event frames
    ``[B, T, H, W, C]``. Collections: ``params`` and ``batch_stats``. ``options`` are the
    model's options of :func:`get_spec` (e.g. ``width_multiplier=0.25``, ``width_change="1x1"`` for wide7b).
    ``neuron_init``: the GLIF layers' initial values, a preset of ``glif_jax.layers.PRESETS``
    or a mapping of the five primitives' values (``config.model.init``); ``init`` is its
    earlier name, still accepted with a ``DeprecationWarning``.
    ``remat``: recompute normalisations and neurons in the backward pass instead of keeping
    them (same results, less memory under a memory-aware XLA scheduler; :class:`SpikingNetwork`).
    """
    if init is not None:
        if neuron_init != "cifar" and neuron_init != init:
            raise ValueError(f"get_model({name!r}): give neuron_init only (init is its deprecated name)")
        warnings.warn("get_model(init=...) is deprecated; the argument is now called neuron_init",
                      DeprecationWarning, stacklevel=2)
        neuron_init = init
    model = ModelOptions(spec=get_spec(name, **options), time_steps=time_steps, neuron=neuron,
                         channel_wise=channel_wise, neuron_init=neuron_init, remat=remat)
    return model.build(num_classes, dtype=dtype, bn_axis_name=bn_axis_name)


def from_config(model_config: Any, num_classes: int, *, dtype: Any = jnp.float32,
                bn_axis_name: str | None = None) -> SpikingNetwork:
    """The model that ``config.model`` describes (name, time_steps, channel_wise, init, neuron, remat, kwargs).

    The same as ``ModelOptions.from_config(model_config).build(...)``; a run that reads its
    config once keeps the :class:`ModelOptions` and builds from it.
    """
    return ModelOptions.from_config(model_config).build(num_classes, dtype=dtype, bn_axis_name=bn_axis_name)

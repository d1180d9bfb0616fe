"""The paper's networks (floor 3): declarative descriptions, one builder, a registry.

Build a model with :func:`get_model` (by name and arguments) or from a config with
``ModelOptions.from_config(config.model).build(num_classes)``."""

from glif_jax.models.builder import SpikingNetwork
from glif_jax.models.description import (AvgPool, ConvUnit, Head, InputSpec, NetworkSpec, Stage, scale_widths,
                                         stages)
from glif_jax.models.options import ModelOptions, get_model
from glif_jax.models.registry import get_spec, list_models, model_options

__all__ = [
    "AvgPool",
    "ConvUnit",
    "Head",
    "InputSpec",
    "ModelOptions",
    "NetworkSpec",
    "SpikingNetwork",
    "Stage",
    "get_model",
    "get_spec",
    "list_models",
    "model_options",
    "scale_widths",
    "stages",
]

"""The paper's networks (floor 3): declarative descriptions, one builder, a registry."""

from glif_jax.models.builder import SpikingNetwork
from glif_jax.models.description import (AvgPool, ConvUnit, Head, InputSpec, NetworkSpec, Stage, scale_widths,
                                         stages)
from glif_jax.models.options import ModelOptions
from glif_jax.models.registry import from_config, get_model, get_spec, list_models, model_options

__all__ = [
    "AvgPool",
    "ConvUnit",
    "Head",
    "InputSpec",
    "ModelOptions",
    "NetworkSpec",
    "SpikingNetwork",
    "Stage",
    "from_config",
    "get_model",
    "get_spec",
    "list_models",
    "model_options",
    "scale_widths",
    "stages",
]

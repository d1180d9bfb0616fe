"""The paper's networks (floor 3): declarative descriptions, one builder, a registry."""

from glif_jax.models.builder import SpikingNetwork
from glif_jax.models.description import AvgPool, ConvUnit, Head, InputSpec, NetworkSpec, Stage, stages
from glif_jax.models.registry import from_config, get_model, get_spec, list_models

__all__ = [
    "AvgPool",
    "ConvUnit",
    "Head",
    "InputSpec",
    "NetworkSpec",
    "SpikingNetwork",
    "Stage",
    "from_config",
    "get_model",
    "get_spec",
    "list_models",
    "stages",
]

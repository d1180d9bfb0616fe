"""Ablation: CIFAR-10, ResNet-18, T = 4 with GLIF_f.

The coarsely fused neuron: no gates (the GLIF paper's neuron equations).
Everything else as in cifar10_resnet18_t4.py.
"""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.cifar("resnet18", "cifar10", time_steps=4, neuron_overrides={"kind": "glif_f"})

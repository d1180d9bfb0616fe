"""Ablation: CIFAR-10, ResNet-18, T = 4 with static gates.

Gates fixed at their initial values, no gradient (the GLIF paper's neuron equations);
add --config.model.neuron.gates=hard for static binary gates.
Everything else as in cifar10_resnet18_t4.py.
"""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.cifar("resnet18", "cifar10", time_steps=4, neuron_overrides={"static_gates": True})

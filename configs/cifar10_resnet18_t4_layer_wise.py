"""Ablation: CIFAR-10, ResNet-18, T = 4 with layer-wise.

One value per layer for each gate and primitive, cond per time step (the GLIF paper's neuron equations).
Everything else as in cifar10_resnet18_t4.py.
"""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.cifar("resnet18", "cifar10", time_steps=4, channel_wise=False)

"""CIFAR-100, ResNet-18, T = 4: the paper's CIFAR recipe.

Paper top-1: 76.50 %.
"""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.cifar("resnet18", "cifar100", time_steps=4)

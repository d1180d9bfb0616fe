"""CIFAR-100, ResNet-19, T = 2: the paper's CIFAR recipe.

Paper top-1: 75.60 %.
"""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.cifar("resnet19", "cifar100", time_steps=2)

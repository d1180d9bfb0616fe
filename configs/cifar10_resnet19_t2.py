"""CIFAR-10, ResNet-19, T = 2: the paper's CIFAR recipe.

Paper top-1: 94.56 %.
"""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.cifar("resnet19", "cifar10", time_steps=2)

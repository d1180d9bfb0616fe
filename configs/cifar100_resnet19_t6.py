"""CIFAR-100, ResNet-19, T = 6: the paper's CIFAR recipe.

Paper top-1: 77.42 %.
"""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.cifar("resnet19", "cifar100", time_steps=6)

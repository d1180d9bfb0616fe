"""CIFAR-10, CIFARNet, T = 4: the paper's CIFAR recipe."""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.cifar("cifarnet", "cifar10", time_steps=4)

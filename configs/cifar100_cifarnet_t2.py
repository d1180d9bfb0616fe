"""CIFAR-100, CIFARNet, T = 2: the paper's CIFAR recipe."""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.cifar("cifarnet", "cifar100", time_steps=2)

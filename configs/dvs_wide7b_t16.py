"""CIFAR10-DVS, 7B-wideNet, T = 16: the paper's DVS recipe.

Paper top-1: 78.10 %.
"""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.dvs("wide7b", time_steps=16)

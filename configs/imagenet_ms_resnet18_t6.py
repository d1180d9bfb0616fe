"""ImageNet, MS-ResNet-18, T = 6: the paper's ImageNet recipe.

Paper top-1: 68.10 %.
"""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.imagenet("ms_resnet18", time_steps=6)

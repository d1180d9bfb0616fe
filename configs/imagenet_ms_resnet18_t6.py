"""ImageNet, MS-ResNet-18, T = 6: the paper's ImageNet recipe.

The GLIF layers start with preset "imagenet_t6" (cond 0.9, as the paper's T = 6 runs).

Paper top-1: 68.10 %.
"""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.imagenet("ms_resnet18", time_steps=6)

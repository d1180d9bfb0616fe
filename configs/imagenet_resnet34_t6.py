"""ImageNet, ResNet-34, T = 6: the paper's ImageNet recipe.

The GLIF layers start with preset "imagenet_t6" (cond 0.9, as the paper's T = 6 runs).
"""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.imagenet("resnet34", time_steps=6)

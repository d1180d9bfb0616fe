"""ImageNet, MS-ResNet-18, T = 4: the paper's ImageNet recipe."""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.imagenet("ms_resnet18", time_steps=4)

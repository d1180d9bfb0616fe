"""ImageNet, ResNet-34, T = 6: the paper's ImageNet recipe."""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.imagenet("resnet34", time_steps=6)

"""CIFAR-10, ResNet-19, T = 6: the paper's CIFAR recipe (SPEC §4).

Paper top-1: 95.14 % (SPEC §6).
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.cifar("resnet19", "cifar10", time_steps=6)

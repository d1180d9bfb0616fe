"""CIFAR10-DVS, 7B-wideNet, T = 16: the paper's DVS recipe (SPEC §4).

Paper top-1: 78.10 % (SPEC §6).
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.dvs("wide7b", time_steps=16)

"""Default: scikit-learn's digits with a tiny spiking ConvNet, T = 4 — runs anywhere, offline.

The data ship inside scikit-learn; a few minutes on 2 CPU cores.
"""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.digits("tiny_convnet", time_steps=4)

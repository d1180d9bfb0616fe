"""Hand runs: the CIFAR recipe, ResNet-18, T = 4 on local CIFAR-10 `.npz` files.

Defaults point at the 5 000-image training subset and the full test set of /work/shared/data;
override with --config.dataset.train_path=... --config.dataset.eval_path=... (arrays `x`
uint8 [N, 32, 32, 3], `y` int [N]). 30 epochs instead of 200: a smoke run, not the paper's.
"""

import ml_collections

from configs import base

DATA = "/work/shared/data"


def get_config() -> ml_collections.ConfigDict:
    return base.cifar_npz(
        "resnet18", time_steps=4, num_epochs=30,
        train_path=f"{DATA}/cifar10_train_5k.npz", eval_path=f"{DATA}/cifar10_test.npz",
    )

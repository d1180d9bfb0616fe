"""Hand runs on a CPU: a NARROW ResNet-18 (width_multiplier 0.25), T = 4, on local CIFAR-10 `.npz` files.

Not the paper's network: every conv width and the hidden head width are a quarter of
ResNet-18's (stem 16, stages 16/32/64/128, head 128→64→10: 0.72 M parameters instead
of 11.35 M), so that an epoch fits a CPU. The rest is the CIFAR recipe (the paper's training recipe: lr 0.1,
batch 64, wd 5e-5, gates at lr/10) with 20 epochs instead of 200.
Defaults point at the 5 000-image training subset and the full test set of /work/shared/data;
override with --config.dataset.train_path=... --config.dataset.eval_path=... (arrays `x`
uint8 [N, 32, 32, 3], `y` int [N]), and the width with --config.model.kwargs.width_multiplier=1.0.
"""

import ml_collections

from configs import base

DATA = "/work/shared/data"


def get_config() -> ml_collections.ConfigDict:
    return base.cifar_npz(
        "resnet18", time_steps=4, num_epochs=20, model_overrides={"width_multiplier": 0.25},
        train_path=f"{DATA}/cifar10_train_5k.npz", eval_path=f"{DATA}/cifar10_test.npz",
    )

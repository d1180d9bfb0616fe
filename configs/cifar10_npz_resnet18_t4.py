"""Hand runs on a CPU: a NARROW ResNet-18 (width_multiplier 0.25), T = 4, on local CIFAR-10 `.npz` files.

Not the paper's network: every conv width and the hidden head width are a quarter of
ResNet-18's (stem 16, stages 16/32/64/128, head 128→64→10: 0.72 M parameters instead
of 11.35 M), so that an epoch fits a CPU. The rest is the CIFAR recipe (the paper's training
recipe: lr 0.1, batch 64, wd 5e-5, gates at lr/10) with 20 epochs instead of 200.
Give the files on the command line: --config.dataset.train_path=train.npz
--config.dataset.eval_path=test.npz (arrays `x` uint8 [N, 32, 32, 3], `y` int [N]; e.g. a
5 000-image training subset for a quick run), and the width with
--config.model.kwargs.width_multiplier=1.0.
"""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.cifar_npz("resnet18", time_steps=4, num_epochs=20, model_overrides={"width_multiplier": 0.25})

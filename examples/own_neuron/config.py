"""The npz CIFAR-10 recipe with a narrow ResNet-18 (width x 1/8) whose spiking layers are ``synaptic_lif``.

    PYTHONPATH=examples/own_neuron glif-train --config examples/own_neuron/config.py --workdir runs/own \
        --config.dataset.train_path=train.npz --config.dataset.eval_path=test.npz

The neuron is named by import path, so this folder must be importable (PYTHONPATH) wherever the
run is continued, evaluated or plotted.
"""

import ml_collections

from glif_jax.configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.cifar_npz("resnet18", time_steps=4, num_epochs=10, model_overrides={"width_multiplier": 0.125},
                          neuron_overrides={"kind": "my_neurons:synaptic_lif", "options": {"reset": "hard"}})

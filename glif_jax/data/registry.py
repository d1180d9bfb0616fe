"""The datasets by name: the module that builds each (imported on first use: TensorFlow and
tonic are slow to import)."""

from __future__ import annotations

# dataset name -> module with `build(options, request) -> (batches, DatasetInfo)`
BUILDER_MODULES = {
    "digits": "glif_jax.data.digits",
    "cifar10": "glif_jax.data.cifar",
    "cifar100": "glif_jax.data.cifar",
    "imagenet2012": "glif_jax.data.imagenet",
    "cifar10_dvs": "glif_jax.data.dvs",
    "npz": "glif_jax.data.npz",
}
DATASET_NAMES = tuple(BUILDER_MODULES)

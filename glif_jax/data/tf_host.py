"""Importing TensorFlow for host-side input pipelines only."""

from __future__ import annotations

import functools
from types import ModuleType

from glif_jax.extras import require

TFDS_FEATURE = "The CIFAR and ImageNet pipelines (TensorFlow Datasets; extra [cifar] or [imagenet])"


@functools.cache
def import_tensorflow() -> ModuleType:
    """Returns the `tensorflow` module with every GPU hidden from it, so that tf.data never
    reserves accelerator memory that JAX needs. Imported lazily: TF is slow to import and
    only the tfds pipelines need it."""
    tf = require("tensorflow", "cifar", TFDS_FEATURE)

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TF already initialised its devices elsewhere
        pass
    return tf


@functools.cache
def import_tfds() -> ModuleType:
    """Returns `tensorflow_datasets`, after `import_tensorflow()`."""
    import_tensorflow()
    return require("tensorflow_datasets", "cifar", TFDS_FEATURE)

"""The model of a run and a batch of its evaluation data, rebuilt from the run's config.

Used to put the GLIF layers in network order (an abstract trace of the model) and to
measure firing rates on real data. The model is rebuilt in float32 whatever the run's
``half_precision`` (parameters are float32 either way).
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from glif_jax import models
from glif_jax.analysis.extraction import network_order

def eval_batch(config: Any, batch_size: int, data_dir: str | None = None) -> tuple[np.ndarray, int]:
    """The first ``batch_size`` real examples of the eval split and the number of classes.

    Raises whatever the data floor raises when the dataset is unavailable
    (``glif_jax.data.DatasetNotFoundError``, ``OSError``, ...).
    """
    from glif_jax import data

    dataset = config.dataset.to_dict() if hasattr(config.dataset, "to_dict") else dict(config.dataset)
    dataset["prefetch"] = 0
    if data_dir is not None:
        dataset["data_dir"] = data_dir
    batches, info = data.build(dataset, split="eval", batch_size=batch_size, seed=int(config.seed), train=False)
    first = next(iter(itertools.islice(batches, 1)), None)
    if first is None:
        raise ValueError(f"the eval split of {info.name!r} is empty")
    images = np.asarray(first["image"])
    if "mask" in first:
        images = images[np.asarray(first["mask"]) > 0]
    return images, int(info.num_classes)


def example_input(model: models.ModelOptions, images: np.ndarray | None = None) -> jax.ShapeDtypeStruct:
    """The shape of one input batch: that of ``images``, else what the architecture declares."""
    shape = (1, *images.shape[1:]) if images is not None else model.spec.input.example_shape(model.time_steps)
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def model_order(model: models.ModelOptions, num_classes: int, images: np.ndarray | None = None) -> list[str]:
    """GLIF layer paths of the model in network order (abstract trace, no compute)."""
    return network_order(model.build(num_classes), example_input(model, images), train=False)

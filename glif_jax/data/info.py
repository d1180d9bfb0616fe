"""What a data pipeline tells the model and the training loop about its split."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one split of a dataset.

    Attributes:
      name: registry name of the dataset ("cifar10", "cifar10_dvs", ...).
      num_classes: number of label classes.
      num_examples: examples in the whole split (all shards together, no padding).
      input_shape: shape of one example as batched: [H, W, C] for images,
        [T, H, W, 2] for event frames.
    """

    name: str
    num_classes: int
    num_examples: int
    input_shape: tuple[int, ...]

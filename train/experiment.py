"""What a training run is made of: model, optimizer and data, built from a config.

``Experiment`` is the seam between the training loop and the floors below it: the loop
only sees this dataclass, so tests can hand it small stand-ins, and ``build_experiment``
makes the real one from what ``validate_config(config)`` read (the model's options, the
dataset's, the optimiser's, the parallel strategy) and the loop's sizes in ``config``.

Each split is built once per run (``glif_jax.data.build``). Data order is a pure function
of ``(config.seed, epoch)``: epoch ``e`` takes the first ``steps_per_epoch`` batches of the
train stream's ``epoch(e)``, whose order the data pipeline draws from ``(config.seed, e)``
alone. A resumed run therefore sees exactly the batches the uninterrupted run would have
seen. Eval batches come padded and masked from the data pipeline.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from glif_jax import data, optim, parallel
from glif_jax.train.validation import ConfigError, RunOptions

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything the loop needs besides the config's plain numbers.

    model: ``model.apply(variables, x, train) -> logits [B, classes]``.
    optimizer: the optax transformation (its schedules count optimizer steps).
    train_batches: epoch -> iterable of this process's train batches for that epoch (at
      least ``steps_per_epoch`` of them; extra ones are not consumed), e.g. a train
      stream's ``epoch``.
    eval_batches: () -> one pass over this process's share of the eval split; every batch
      has exactly the per-process eval batch size and a "mask" (a last partial batch is
      padded with masked rows: ``glif_jax.data.batching.with_mask``).
    learning_rates: step -> {group: learning rate}, for logging (may return {}).
    """

    model: nn.Module
    optimizer: optax.GradientTransformation
    num_classes: int
    input_shape: tuple[int, ...]
    steps_per_epoch: int
    train_batches: Callable[[int], Iterable[Batch]]
    eval_batches: Callable[[], Iterable[Batch]]
    learning_rates: Callable[[int], Mapping[str, float]] = lambda step: {}


def compute_dtype(config: Any) -> Any:
    """bfloat16 under ``config.half_precision`` (parameters stay float32), else float32."""
    return jnp.bfloat16 if config.half_precision else jnp.float32


def build_experiment(config: Any, options: RunOptions) -> Experiment:
    """The real experiment of ``config``, built from what ``validate_config(config)`` returned:
    data, model (its BN statistics averaged over the strategy's ``bn_axis_name``) and optimizer
    from the checked sections, the loop's sizes from ``config``."""
    per_process_batch = parallel.per_process_batch_size(config.batch_size)
    per_process_eval_batch = parallel.per_process_batch_size(config.eval_batch_size)
    shards = dict(shard_index=jax.process_index(), shard_count=jax.process_count())

    train_stream, train_info = data.build(
        options.dataset, split="train", batch_size=per_process_batch, seed=config.seed,
        train=True, drop_remainder=True, **shards,
    )
    eval_pass, _ = data.build(  # re-iterable: one pass per iteration
        options.dataset, split="eval", batch_size=per_process_eval_batch, seed=config.seed,
        train=False, drop_remainder=False, **shards,
    )
    steps_per_epoch = config.steps_per_epoch or train_info.num_examples // config.batch_size
    if steps_per_epoch < 1:
        raise ConfigError(
            f"config.batch_size={config.batch_size} is larger than the "
            f"{train_info.num_examples} training examples of {train_info.name!r}"
        )
    optim_args = dict(num_epochs=config.num_epochs, steps_per_epoch=steps_per_epoch)
    schedules = optim.learning_rates(options.optimizer, **optim_args)
    return Experiment(
        model=options.model.build(train_info.num_classes, dtype=compute_dtype(config), bn_axis_name=options.strategy.bn_axis_name),
        optimizer=optim.make_optimizer(options.optimizer, neuron=options.model.neuron, **optim_args),
        num_classes=train_info.num_classes,
        input_shape=tuple(train_info.input_shape),
        steps_per_epoch=steps_per_epoch,
        train_batches=train_stream.epoch,
        eval_batches=lambda: eval_pass,
        learning_rates=lambda step: {group: float(lr(step)) for group, lr in schedules.items()},
    )

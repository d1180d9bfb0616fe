"""Small stand-ins for the training-system tests: a BatchNorm ConvNet, in-memory data, a config.

They let tests/test_train*.py, test_checkpoint.py and test_parallel.py exercise the loop
without the real models and datasets (and in a fraction of their compile time). The
in-memory data are batched by the data pipelines' own batching
(glif_jax.data.batching): a train stream with ``epoch(e)``, and an eval pass whose last
partial batch is padded and masked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from glif_jax.data.batching import OrderedPass, ShuffledBatches
from glif_jax.data.options import BatchRequest
from glif_jax.train.experiment import Experiment

IMAGE_SHAPE = (6, 6, 2)
NUM_CLASSES = 4


class TinyBatchNormNet(nn.Module):
    """conv3x3(4) -> BatchNorm -> relu -> mean over space -> dense: logits [B, classes] float32.

    ``bn_axis_name`` averages the batch statistics over a pmap axis, as the real models'
    tdBN does; ``dtype`` is the compute dtype.
    """

    num_classes: int = NUM_CLASSES
    bn_axis_name: str | None = None
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool):
        x = nn.Conv(4, (3, 3), use_bias=False, dtype=self.dtype)(images)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.bn_axis_name,
                         dtype=self.dtype)(x)
        x = nn.relu(x).mean(axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


def dataset(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A learnable toy split: each class brightens a different channel/half of the image."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, size).astype(np.int32)
    images = rng.normal(0.0, 0.5, (size, *IMAGE_SHAPE)).astype(np.float32)
    for label in range(NUM_CLASSES):
        rows = labels == label
        channel, half = divmod(label, 2)
        images[rows, half * 3:(half + 1) * 3, :, channel] += 1.5
    return images, labels


class Interrupted(Exception):
    """Raised by the stand-in data to simulate a run killed mid-way."""


def make_experiment(
    config: ml_collections.ConfigDict,
    *,
    bn_axis_name: str | None = None,
    train_size: int = 64,
    eval_size: int = 20,
    interrupt_at_batch: int | None = None,
    batch_hook: Callable[[int, dict], dict] | None = None,
) -> Experiment:
    """An ``Experiment`` over in-memory data whose order depends on ``(config.seed, epoch)``
    (the batching of the data pipelines: ``epoch(e)`` of a train stream; unaugmented).

    ``interrupt_at_batch``: raise ``Interrupted`` when the run asks for its n-th train batch
    (counted over the whole run, from 0) — a kill in the middle of training.
    ``batch_hook(n, batch) -> batch``: sees (and may replace) the n-th train batch served.
    """
    train_images, train_labels = dataset(1, train_size)
    eval_images, eval_labels = dataset(2, eval_size)
    served = [0]
    train_stream = ShuffledBatches(
        train_images, train_labels, lambda images, rng: images,
        BatchRequest("train", config.batch_size, config.seed, train=True, drop_remainder=True),
    )
    eval_pass = OrderedPass(  # a last partial batch comes padded and masked
        eval_images, eval_labels, lambda images: images,
        BatchRequest("eval", config.eval_batch_size, config.seed, train=False),
    )

    def train_batches(epoch):
        for batch in train_stream.epoch(epoch):
            if interrupt_at_batch is not None and served[0] == interrupt_at_batch:
                raise Interrupted(f"simulated kill at batch {served[0]}")
            if batch_hook is not None:
                batch = batch_hook(served[0], batch)
            served[0] += 1
            yield batch

    steps_per_epoch = config.steps_per_epoch or train_size // config.batch_size
    schedule = optax.cosine_decay_schedule(config.optim.base_lr, config.num_epochs * steps_per_epoch)
    dtype = jnp.bfloat16 if config.half_precision else jnp.float32
    return Experiment(
        model=TinyBatchNormNet(bn_axis_name=bn_axis_name, dtype=dtype),
        optimizer=optax.sgd(schedule, momentum=config.optim.momentum),
        num_classes=NUM_CLASSES,
        input_shape=IMAGE_SHAPE,
        steps_per_epoch=steps_per_epoch,
        train_batches=train_batches,
        eval_batches=lambda: eval_pass,
        learning_rates=lambda step: {"weights": float(schedule(step))},
    )


def small_config(**overrides) -> ml_collections.ConfigDict:
    """A locked config of the shared schema sized for the stand-ins."""
    config = ml_collections.ConfigDict(dict(
        seed=0, num_epochs=2, batch_size=8, eval_batch_size=8, steps_per_epoch=4, eval_steps=None,
        dataset=dict(name="digits", data_dir=None, train_path=None, eval_path=None, normalization=None,
                     augment=False, cache_dir=None, prefetch=0),
        model=dict(name="tiny_convnet", time_steps=2, channel_wise=True, init="cifar",
                   neuron=dict(kind="glif", gates="soft", static_gates=False, static_primitives=False,
                               surrogate="rectangular", surrogate_width=None),
                   kwargs={}),
        optim=dict(base_lr=0.1, momentum=0.9, weight_decay=0.0, gate_lr_scale=1.0, primitive_lr_scale=1.0,
                   cosine_period_epochs=None, step_schedule_per="step", nesterov=False),
        half_precision=False, parallel="none",
        checkpoint={"every_epochs": 1, "every_steps": None, "keep": 2, "async_save": True},
        nonfinite={"action": "stop", "max_consecutive_skips": 3},
        log_every_steps=2, spike_stats=False,
    ))
    for key, value in overrides.items():
        target = config
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target[parent]
        if leaf in target and value is not None and not isinstance(value, type(target[leaf])):
            del target[leaf]   # e.g. explicit GLIF initial values where the schema has a preset name
        target[leaf] = value
    config.lock()
    return config


def records(workdir) -> list[dict]:
    """The records of a run's ``metrics.jsonl``."""
    from glif_jax.train.writers import METRICS_FILE

    return [json.loads(line) for line in (Path(workdir) / METRICS_FILE).read_text().splitlines()]


def resumed_at(workdir) -> list[int]:
    """The step each resume of the run in ``workdir`` continued from (its ``config_history.jsonl``)."""
    from glif_jax.train.config_changes import HISTORY_FILE

    return [json.loads(line)["resumed_at_step"] for line in (Path(workdir) / HISTORY_FILE).read_text().splitlines()]


def logged_steps(workdir) -> dict[str, list[int]]:
    """The steps of the records in ``metrics.jsonl``, by split, in the order written (a redone
    step logged twice shows up twice)."""
    steps: dict[str, list[int]] = {}
    for record in records(workdir):
        steps.setdefault(record["split"], []).append(record["step"])
    return steps


def restored_state(workdir: Path, config: ml_collections.ConfigDict):
    """The newest checkpoint of the stand-in run of ``config`` in ``workdir``, as a TrainState."""
    from glif_jax.checkpoint import Checkpointer
    from glif_jax.train.train import initial_state

    with Checkpointer(Path(workdir) / "checkpoints", read_only=True) as checkpointer:
        state, _ = checkpointer.restore(initial_state(config, make_experiment(config)))
    return state

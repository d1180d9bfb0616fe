"""Batching of in-memory (or memory-mapped) example arrays for one process.

Train stream (`ShuffledBatches`): `epoch(e)` yields the batches of training epoch e, pass
after pass over the split, without end (a training epoch takes the first
`config.steps_per_epoch` batches: normally exactly the first pass, which is the default
steps per epoch). Pass p of epoch e visits a permutation of the whole split drawn from
(epoch_seed(seed, e), p) — the same on every process — and process k takes every
shard_count-th example of it starting at k, cut to N // shard_count examples so that all
processes run the same number of steps; shards are disjoint within each pass. Augmentation
draws from (epoch_seed(seed, e), p, shard_index). Epoch e's batches therefore depend only on
(seed, e): a resumed run sees exactly those of the uninterrupted one. Iterating the stream
itself gives epoch 0.

Eval pass (`OrderedPass`): exactly one pass in the split's order; process k takes examples
k, k + shard_count, ... With drop_remainder=False (the default for eval) a last partial
batch is zero-padded, and every process yields the same number of batches,
ceil(ceil(N / shard_count) / batch_size), padding with fully masked batches if needed.

Every batch is a dict of NumPy arrays: "image" float32 [B, ...], "label" int32 [B] and
"mask" float32 [B] (1 = real example, 0 = padding; all ones in full batches). `with_mask`
is the one place where batches are padded and masked.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator

import numpy as np

from glif_jax.data.options import BatchRequest

Batch = dict[str, np.ndarray]
TrainPreprocess = Callable[[np.ndarray, np.random.Generator], np.ndarray]
EvalPreprocess = Callable[[np.ndarray], np.ndarray]


def epoch_seed(seed: int, epoch: int) -> int:
    """The data seed of training epoch ``epoch`` of a stream seeded ``seed``: a 31-bit
    integer drawn from ``(seed, epoch)`` by NumPy's ``SeedSequence``. Every train stream
    draws the order and augmentation of epoch ``epoch`` from it."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] >> 1)


def with_mask(batch: Batch, batch_size: int) -> Batch:
    """Zero-pads "image" and "label" of a batch of n <= batch_size examples to batch_size
    and adds "mask" (float32 [batch_size], 1 for the n real examples)."""
    count = batch["label"].shape[0]
    if count > batch_size:
        raise ValueError(f"batch holds {count} examples, more than batch_size={batch_size}")
    images = np.asarray(batch["image"], np.float32)
    labels = np.asarray(batch["label"], np.int32)
    if count < batch_size:
        images = np.pad(images, [(0, batch_size - count)] + [(0, 0)] * (images.ndim - 1))
        labels = np.pad(labels, (0, batch_size - count))
    mask = (np.arange(batch_size) < count).astype(np.float32)
    return {"image": images, "label": labels, "mask": mask}


def _paired(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The examples of a split, labels as int32; one label per image or a clear error."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    return images, np.asarray(labels, np.int32)


class ShuffledBatches:
    """The train stream of one shard: ``epoch(e)``, reshuffled every pass, augmented (see
    module doc). ``batches_per_epoch``: the batches of one pass."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        preprocess: TrainPreprocess,
        request: BatchRequest,
    ):
        self.images, self.labels = _paired(images, labels)
        self.preprocess = preprocess
        self.request = request
        self.examples_per_shard = len(labels) // request.shard_count
        if request.drop_remainder:
            self.batches_per_epoch = self.examples_per_shard // request.batch_size
        else:
            self.batches_per_epoch = math.ceil(self.examples_per_shard / request.batch_size)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"batch_size={request.batch_size} is larger than the "
                f"{self.examples_per_shard} examples per shard of this split "
                f"({len(labels)} examples, shard_count={request.shard_count})"
            )

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of training epoch ``epoch`` of this shard, pass after pass, endless."""
        data_seed = epoch_seed(self.request.seed, epoch)
        for pass_index in itertools.count():
            yield from self._one_pass(data_seed, pass_index)

    def _one_pass(self, data_seed: int, pass_index: int) -> Iterator[Batch]:
        """One pass over this shard: ``batches_per_epoch`` batches (see module doc)."""
        request = self.request
        order = np.random.default_rng((data_seed, 0, pass_index)).permutation(len(self.labels))
        mine = order[request.shard_index :: request.shard_count][: self.examples_per_shard]
        augment_rng = np.random.default_rng((data_seed, 1, pass_index, request.shard_index))
        for start in range(0, self.batches_per_epoch * request.batch_size, request.batch_size):
            indices = np.sort(mine[start : start + request.batch_size])  # sorted: local reads
            images = self.preprocess(self.images[indices], augment_rng)
            yield with_mask({"image": images, "label": self.labels[indices]}, request.batch_size)


class OrderedPass:
    """One ordered, padded and masked pass over one shard (see module doc)."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        preprocess: EvalPreprocess,
        request: BatchRequest,
    ):
        self.images, self.labels = _paired(images, labels)
        self.preprocess = preprocess
        self.request = request
        self.indices = np.arange(len(labels))[request.shard_index :: request.shard_count]
        self.num_batches = pass_length(len(labels), request)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[Batch]:
        size = self.request.batch_size
        for start in range(0, self.num_batches * size, size):
            indices = self.indices[start : start + size]
            images = self.preprocess(self.images[indices])
            yield with_mask({"image": images, "label": self.labels[indices]}, size)


def pass_length(num_examples: int, request: BatchRequest) -> int:
    """Batches per process in one eval pass (equal on all processes)."""
    if request.drop_remainder:
        return (num_examples // request.shard_count) // request.batch_size
    return math.ceil(math.ceil(num_examples / request.shard_count) / request.batch_size)


def array_batches(
    images: np.ndarray,
    labels: np.ndarray,
    request: BatchRequest,
    *,
    eval_preprocess: EvalPreprocess,
    train_preprocess: TrainPreprocess | None = None,
) -> ShuffledBatches | OrderedPass:
    """The batches `request` asks for: `ShuffledBatches` with `train_preprocess` when
    request.train (with `eval_preprocess` if it is None: no augmentation), else `OrderedPass`
    with `eval_preprocess`."""
    if not request.train:
        return OrderedPass(images, labels, eval_preprocess, request)
    if train_preprocess is None:
        return ShuffledBatches(images, labels, lambda raw, rng: eval_preprocess(raw), request)
    return ShuffledBatches(images, labels, train_preprocess, request)

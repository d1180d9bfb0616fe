"""ImageNet (ILSVRC 2012) from tensorflow-datasets' `imagenet2012`, through tf.data.

The original archives ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar must be placed
in `<data_dir>/downloads/manual/`; tfds converts them once (hours) into `<data_dir>`.
"train" is tfds's train split, "eval" its validation split (50 000 images). Each process
reads its part (`tfds.even_splits`). Preprocessing: glif_jax.data.imagenet_preprocess.
Train: `epoch(e)` is the tf.data pipeline seeded with epoch_seed(seed, e) (file order, a
shuffle buffer reshuffled every pass, per-example augmentation seeds), so epoch e's
batches depend only on (seed, e).
Batches: "image" float32 [B, 224, 224, 3], "label" int32 [B], "mask" float32 [B].
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from glif_jax.data.batching import Batch, epoch_seed, pass_length, with_mask
from glif_jax.data.info import DatasetInfo
from glif_jax.data.options import BatchRequest, DatasetOptions
from glif_jax.data.tf_host import import_tensorflow, import_tfds
from glif_jax.data.tfds_builder import manual_dir, prepared_builder

ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
NUM_CLASSES = 1000
SHUFFLE_BUFFER = 10_000
_TFDS_SPLITS = {"train": "train", "eval": "validation"}


class TfBatches:
    """Re-iterable NumPy batches of the tf.data pipeline ``make_dataset(seed)``, padded and
    masked. Train (``num_batches`` None): ``epoch(e)`` is the endless pipeline of seed
    epoch_seed(seed, e), and iterating gives epoch 0. Eval: one pass of exactly
    ``num_batches`` batches (fully masked ones at the end if this shard ran out first), and
    len() is defined."""

    def __init__(
        self,
        make_dataset: Callable[[int], object],
        batch_size: int,
        example_shape: tuple[int, ...],
        num_batches: int | None,
        seed: int,
    ):
        self.make_dataset = make_dataset
        self.batch_size = batch_size
        self.example_shape = example_shape
        self.num_batches = num_batches
        self.seed = seed

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("the train stream is infinite")
        return self.num_batches

    def __iter__(self) -> Iterator[Batch]:
        if self.num_batches is None:
            return self.epoch(0)
        return self._batches(self.seed)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of training epoch ``epoch``, endless (train streams only)."""
        if self.num_batches is not None:
            raise TypeError("an eval pass has no epochs")
        return self._batches(epoch_seed(self.seed, epoch))

    def _batches(self, seed: int) -> Iterator[Batch]:
        tfds = import_tfds()
        produced = 0
        for batch in tfds.as_numpy(self.make_dataset(seed)):
            if self.num_batches is not None and produced == self.num_batches:
                return
            yield with_mask(batch, self.batch_size)
            produced += 1
        empty = {
            "image": np.zeros((0, *self.example_shape), np.float32),
            "label": np.zeros((0,), np.int32),
        }
        while self.num_batches is not None and produced < self.num_batches:
            yield with_mask(empty, self.batch_size)
            produced += 1


def how_to_get(data_dir: str | None) -> str:
    manual = manual_dir(data_dir)
    return (
        "ImageNet cannot be downloaded automatically: register at "
        "https://image-net.org/download-images, download ILSVRC2012_img_train.tar and "
        f"ILSVRC2012_img_val.tar (ILSVRC 2012) and put both, unextracted, into {manual}/. "
        "They are converted by tensorflow-datasets on first use (single process, hours), "
        f"or beforehand with `tfds build imagenet2012 --manual_dir {manual}`. "
        "Set config.dataset.data_dir to the tfds data_dir."
    )


def build(options: DatasetOptions, request: BatchRequest):
    """(iterable of batches, DatasetInfo) for "imagenet2012"."""
    from glif_jax.data import imagenet_preprocess

    tf = import_tensorflow()
    tfds = import_tfds()
    builder = prepared_builder(
        "imagenet2012",
        options.data_dir,
        archives=ARCHIVES,
        how_to_get=how_to_get(options.data_dir),
        may_prepare=request.shard_count == 1,
    )
    tfds_split = _TFDS_SPLITS[request.split]
    num_examples = builder.info.splits[tfds_split].num_examples
    shard = tfds.even_splits(tfds_split, n=request.shard_count, drop_remainder=request.train)[
        request.shard_index
    ]
    augment = options.augment

    def prepare(image_bytes, index, seed):
        if not augment:
            return imagenet_preprocess.eval_image(image_bytes)
        base = tf.constant([seed, request.shard_index], tf.int64)
        example_seed = tf.random.experimental.stateless_fold_in(base, index)
        return imagenet_preprocess.train_image(image_bytes, example_seed)

    def make_dataset(seed):
        options_tf = tf.data.Options()
        options_tf.deterministic = True
        dataset = builder.as_dataset(
            split=shard,
            shuffle_files=request.train,
            decoders={"image": tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(shuffle_seed=seed, options=options_tf),
        )
        if request.train:
            dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
            dataset = dataset.repeat().enumerate().map(
                lambda index, example: {
                    "image": prepare(example["image"], index, seed),
                    "label": example["label"],
                },
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        else:
            dataset = dataset.map(
                lambda example: {
                    "image": imagenet_preprocess.eval_image(example["image"]),
                    "label": example["label"],
                },
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        dataset = dataset.batch(request.batch_size, drop_remainder=request.drop_remainder)
        return dataset.prefetch(tf.data.AUTOTUNE)

    image_shape = (imagenet_preprocess.IMAGE_SIZE, imagenet_preprocess.IMAGE_SIZE, 3)
    num_batches = None if request.train else pass_length(num_examples, request)
    batches = TfBatches(make_dataset, request.batch_size, image_shape, num_batches, request.seed)
    return batches, DatasetInfo("imagenet2012", NUM_CLASSES, num_examples, image_shape)

"""CIFAR-10 / CIFAR-100 from tensorflow-datasets (the paper's data setup).

The official train / test split ("train" / "eval") is read into memory when it is built
(uint8, 150 MB for the train split; a run builds each split once) in the original file
order, then batched on the host
(glif_jax.data.batching). Train: random crop 32 with 4-pixel zero padding (a zero pixel,
i.e. black, as torchvision's RandomCrop(32, padding=4) on the image) and random horizontal
flip; then, train and eval: scale to [0, 1] and normalise with the usual CIFAR means and stds.
Batches: "image" float32 [B, 32, 32, 3], "label" int32 [B], "mask" float32 [B].
"""

from __future__ import annotations

import dataclasses

import numpy as np

from glif_jax.data.augment import random_crop, random_horizontal_flip
from glif_jax.data.batching import EvalPreprocess, TrainPreprocess, array_batches
from glif_jax.data.info import DatasetInfo
from glif_jax.data.normalization import normalize_uint8
from glif_jax.data.options import BatchRequest, DatasetOptions
from glif_jax.data.tf_host import import_tfds
from glif_jax.data.tfds_builder import manual_dir, prepared_builder

CROP_PADDING = 4


@dataclasses.dataclass(frozen=True)
class CifarSource:
    """Where one CIFAR variant comes from."""

    num_classes: int
    archive: str  # the original file, as tfds's builder downloads it
    url: str


_SITE = "https://www.cs.toronto.edu/~kriz/"
SOURCES = {
    "cifar10": CifarSource(10, "cifar-10-binary.tar.gz", _SITE + "cifar-10-binary.tar.gz"),
    "cifar100": CifarSource(100, "cifar-100-binary.tar.gz", _SITE + "cifar-100-binary.tar.gz"),
}
_TFDS_SPLITS = {"train": "train", "eval": "test"}


def preprocessing(normalization: str) -> tuple[TrainPreprocess, EvalPreprocess]:
    """(train, eval) preprocessing of uint8 [B, H, W, 3] batches into normalised float32."""

    def train(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cropped = random_crop(images, rng, CROP_PADDING)
        return normalize_uint8(random_horizontal_flip(cropped, rng), normalization)

    def evaluate(images: np.ndarray) -> np.ndarray:
        return normalize_uint8(images, normalization)

    return train, evaluate


def how_to_get(name: str, data_dir: str | None) -> str:
    source = SOURCES[name]
    target = data_dir or "~/tensorflow_datasets"
    return (
        f"Either put the original archive {source.archive} (from {source.url}) unextracted "
        f"into {manual_dir(data_dir)}/ — it is converted on first use, offline — or run "
        f"`tfds build {name} --data_dir {target}` on a machine with internet access and "
        f"copy the resulting {target}/{name}/ folder here. "
        "Set config.dataset.data_dir to the tfds data_dir."
    )


def load_split(name: str, data_dir: str | None, split: str, *, may_prepare: bool = True):
    """Returns (images uint8 [N, 32, 32, 3], labels int32 [N]) of "train" or "eval",
    in the order of the original files, read from tfds. ``may_prepare``: convert the
    original archives if tfds has not yet."""
    source = SOURCES[name]
    builder = prepared_builder(
        name,
        data_dir,
        archives=(source.archive,),
        how_to_get=how_to_get(name, data_dir),
        may_prepare=may_prepare,
    )
    tfds = import_tfds()
    arrays = tfds.as_numpy(builder.as_dataset(split=_TFDS_SPLITS[split], batch_size=-1))
    order = np.argsort(arrays["id"], kind="stable")  # "train_00000", ...: the file order
    return arrays["image"][order], arrays["label"][order].astype(np.int32)


def build(options: DatasetOptions, request: BatchRequest):
    """(iterable of batches, DatasetInfo) for "cifar10" / "cifar100"."""
    images, labels = load_split(
        options.name, options.data_dir, request.split, may_prepare=request.shard_count == 1
    )
    train, evaluate = preprocessing(options.name)
    batches = array_batches(
        images,
        labels,
        request,
        eval_preprocess=evaluate,
        train_preprocess=train if options.augment else None,
    )
    info = DatasetInfo(options.name, SOURCES[options.name].num_classes, len(labels), (32, 32, 3))
    return batches, info

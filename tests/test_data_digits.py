"""The default dataset: scikit-learn digits (glif_jax.data.digits)."""

import itertools

import numpy as np
import pytest
from sklearn.datasets import load_digits

from glif_jax import data
from glif_jax.data.digits import load_split
from glif_jax.data.normalization import MEAN_STD, normalize
from tests.data_reference import assert_batches_equal, reference_batches
from tests.shard_checks import assert_shards_partition_the_split


def gather(split, **kwargs):
    batches, info = data.build({"name": "digits"}, split=split, batch_size=50, seed=0, train=False, **kwargs)
    collected = list(batches)
    mask = np.concatenate([b["mask"] for b in collected]) == 1
    images = np.concatenate([b["image"] for b in collected])[mask]
    labels = np.concatenate([b["label"] for b in collected])[mask]
    return images, labels, info


def test_split_is_a_fixed_stratified_80_20_partition():
    """Train and eval together are the 1797 digits, disjoint, each class ~80/20."""
    raw = load_digits()
    train_images, train_labels = load_split("train")
    eval_images, eval_labels = load_split("eval")
    assert len(train_labels) == 1437 and len(eval_labels) == 360
    all_images = np.concatenate([train_images, eval_images])[..., 0] * 16
    assert sorted(map(bytes, all_images.astype(np.uint8))) == sorted(
        map(bytes, raw.images.astype(np.uint8))
    )
    for label in range(10):
        total = (raw.target == label).sum()
        assert abs((eval_labels == label).sum() - 0.2 * total) <= 1


def test_images_are_scaled_by_one_sixteenth_and_normalised():
    """Pixels 0..16 -> [0, 1] -> (x - mean) / std with the train split's statistics."""
    images, labels, info = gather("eval")
    raw_images, raw_labels = load_split("eval")
    mean, std = MEAN_STD["digits"]
    assert images.shape == (360, 8, 8, 1) and images.dtype == np.float32
    np.testing.assert_array_equal(labels, raw_labels)
    np.testing.assert_allclose(images * std[0] + mean[0], raw_images, atol=1e-6)
    assert raw_images.min() == 0.0 and raw_images.max() == 1.0
    assert info.num_classes == 10


def test_digits_normalisation_constants_are_the_train_split_statistics():
    train_images, _ = load_split("train")
    mean, std = MEAN_STD["digits"]
    assert abs(train_images.mean() - mean[0]) < 1e-4
    assert abs(train_images.std() - std[0]) < 1e-4


def test_eval_shards_partition_the_split():
    parts = [gather("eval", shard_index=k, shard_count=3)[1] for k in range(3)]
    assert sum(len(part) for part in parts) == 360
    _, all_labels = load_split("eval")
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.sort(all_labels))
    np.testing.assert_array_equal(parts[1], all_labels[1::3])


@pytest.mark.parametrize("shard_index, shard_count", [(0, 1), (1, 2)])
def test_train_epochs_keep_the_reference_order(shard_index, shard_count):
    """epoch(e) of the train stream: the order training runs have always used (two passes of
    1437 // 64 = 22 batches and one more, for runs with more steps per epoch than a pass)."""
    images, labels = load_split("train")
    stream, _ = data.build({"name": "digits"}, split="train", batch_size=64, seed=5, train=True,
                           shard_index=shard_index, shard_count=shard_count)
    count = 2 * (1437 // shard_count // 64) + 1
    for epoch in (0, 3):
        expected = reference_batches(images, labels, 64, 5, epoch, count, lambda raw, rng: normalize(raw, "digits"),
                                     shard_index=shard_index, shard_count=shard_count)
        assert_batches_equal(itertools.islice(stream.epoch(epoch), count), expected)


@pytest.mark.parametrize("split", ["train", "eval"])
def test_process_shards_are_disjoint_and_cover_the_split(split):
    assert_shards_partition_the_split({"name": "digits", "prefetch": 0}, split, eval_batch_size=7,
                                      train_batch_size=2 if split == "train" else 5)

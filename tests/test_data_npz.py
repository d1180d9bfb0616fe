"""The "npz" dataset: arrays in the layout of CIFAR-10 as .npz files, with CIFAR
preprocessing (the paper's data setup). Fixture files are written by the tests."""

import itertools

import numpy as np
import pytest

from glif_jax import data
from glif_jax.data import npz

CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465])
CIFAR10_STD = np.array([0.247, 0.243, 0.261])


def write_npz(path, count, *, with_classes=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = dict(x=rng.integers(1, 256, size=(count, 32, 32, 3), dtype=np.uint8),
                  y=rng.integers(0, 5, size=count).astype(np.int64))
    if with_classes:
        arrays["classes"] = np.array([f"class{i}" for i in range(10)])
    np.savez(path, **arrays)
    return arrays


def config(tmp_path, **overrides):
    values = dict(name="npz", train_path=str(tmp_path / "train.npz"),
                  eval_path=str(tmp_path / "eval.npz"), normalization="cifar10", prefetch=0)
    values.update(overrides)
    return values


def test_eval_pass_is_the_normalised_file(tmp_path):
    """The paper's data setup eval: scale to [0, 1] and normalise; file order kept."""
    arrays = write_npz(tmp_path / "eval.npz", 7)
    batches, info = data.build(config(tmp_path), split="eval", batch_size=4, seed=0, train=False)
    collected = list(batches)
    images = np.concatenate([b["image"] for b in collected])[:7]
    labels = np.concatenate([b["label"] for b in collected])[:7]
    np.testing.assert_allclose(images, (arrays["x"] / 255.0 - CIFAR10_MEAN) / CIFAR10_STD, atol=1e-5)
    np.testing.assert_array_equal(labels, arrays["y"])
    assert info == data.DatasetInfo("npz", 10, 7, (32, 32, 3))


def test_num_classes_without_class_names_is_max_label_plus_one(tmp_path):
    arrays = write_npz(tmp_path / "eval.npz", 6, with_classes=False)
    _, info = data.build(config(tmp_path), split="eval", batch_size=2, seed=0, train=False)
    assert info.num_classes == arrays["y"].max() + 1


def test_train_stream_is_augmented_only_when_asked(tmp_path):
    """The paper's data setup train: crop + flip change the images; augment=False leaves them as in eval."""
    arrays = write_npz(tmp_path / "train.npz", 8)
    normalised = (arrays["x"] / 255.0 - CIFAR10_MEAN) / CIFAR10_STD
    plain, _ = data.build(config(tmp_path, augment=False), split="train", batch_size=4, seed=0, train=True)
    augmented, _ = data.build(config(tmp_path), split="train", batch_size=4, seed=0, train=True)

    def matches_an_original(image):
        return any(np.allclose(image, original, atol=1e-5) for original in normalised)

    plain_images = np.concatenate([b["image"] for b in itertools.islice(plain, 4)])
    augmented_images = np.concatenate([b["image"] for b in itertools.islice(augmented, 4)])
    assert all(matches_an_original(image) for image in plain_images)
    assert sum(matches_an_original(image) for image in augmented_images) < len(augmented_images) // 2


def test_missing_file_and_missing_settings_are_clear_errors(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="train.npz"):
        data.build(config(tmp_path), split="train", batch_size=2, seed=0, train=True)
    with pytest.raises(ValueError, match="dataset_config.eval_path is required"):
        data.build(config(tmp_path, eval_path=None), split="eval", batch_size=2, seed=0, train=False)
    write_npz(tmp_path / "eval.npz", 3)
    with pytest.raises(ValueError, match="dataset_config.normalization is required"):
        data.build(config(tmp_path, normalization=None), split="eval", batch_size=2, seed=0, train=False)


def test_wrong_array_layout_is_rejected(tmp_path):
    np.savez(tmp_path / "eval.npz", x=np.zeros((3, 32, 32, 3), np.float32), y=np.zeros(3))
    with pytest.raises(ValueError, match=r"x must be uint8 \[N, H, W, C\]"):
        data.build(config(tmp_path), split="eval", batch_size=2, seed=0, train=False)


def test_file_is_read_once_while_unchanged_and_shared_read_only(tmp_path, monkeypatch):
    """The train stream is rebuilt every epoch: an unchanged file is read once, its cached arrays
    cannot be written to; a rewritten file is read again."""
    arrays = write_npz(tmp_path / "train.npz", 8)
    reads = []
    read_file = np.load
    monkeypatch.setattr(npz.np, "load", lambda path, *args, **kwargs: (reads.append(path), read_file(path))[1])
    for epoch in range(3):
        batches, _ = data.build(config(tmp_path), split="train", batch_size=4, seed=epoch, train=True)
        next(iter(batches))
    assert reads == [str(tmp_path / "train.npz")]
    images, labels, _ = npz.load(str(tmp_path / "train.npz"))
    for array in (images, labels):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 0
    np.testing.assert_array_equal(images, arrays["x"])
    rewritten = write_npz(tmp_path / "train.npz", 9, seed=1)
    images, labels, _ = npz.load(str(tmp_path / "train.npz"))
    assert len(reads) == 2
    np.testing.assert_array_equal(images, rewritten["x"])
    np.testing.assert_array_equal(labels, rewritten["y"])

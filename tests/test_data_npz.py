"""The "npz" dataset: arrays in the layout of CIFAR-10 as .npz files, with CIFAR
preprocessing (the paper's data setup). Fixture files are written by the tests."""

import itertools
import logging
import os

import numpy as np
import pytest

from glif_jax import data
from glif_jax.data import cifar, npz
from tests.data_reference import assert_batches_equal, reference_batches
from tests.shard_checks import assert_shards_partition_the_split

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
    with pytest.raises(ValueError, match="^eval_path: required for the 'npz' dataset"):
        data.build(config(tmp_path, eval_path=None), split="eval", batch_size=2, seed=0, train=False)
    write_npz(tmp_path / "eval.npz", 3)
    with pytest.raises(ValueError, match="^normalization: required for the 'npz' dataset"):
        data.build(config(tmp_path, normalization=None), split="eval", batch_size=2, seed=0, train=False)


def test_wrong_array_layout_is_rejected(tmp_path):
    np.savez(tmp_path / "eval.npz", x=np.zeros((3, 32, 32, 3), np.float32), y=np.zeros(3))
    with pytest.raises(ValueError, match=r"x must be uint8 \[N, H, W, C\]"):
        data.build(config(tmp_path), split="eval", batch_size=2, seed=0, train=False)


class WatchedNpz:
    """An open .npz file that records which arrays are read from it."""

    def __init__(self, arrays, path, read):
        self._arrays, self._name, self._read = arrays, os.path.basename(path), read

    def __getattr__(self, name):
        return getattr(self._arrays, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._arrays.close()

    def __getitem__(self, key):
        self._read.append((self._name, key))
        return self._arrays[key]


def test_a_run_reads_each_file_once_and_the_eval_split_no_train_images(tmp_path, monkeypatch):
    """A run builds each split once; the eval split's check of the train file reads its
    labels and class names, not its images."""
    write_npz(tmp_path / "train.npz", 8)
    write_npz(tmp_path / "eval.npz", 5)
    read = []
    load = np.load
    monkeypatch.setattr(npz.np, "load",
                        lambda path, *args, **kwargs: WatchedNpz(load(path, *args, **kwargs), path, read))
    train, _ = data.build(config(tmp_path), split="train", batch_size=4, seed=0, train=True)
    evaluated, info = data.build(config(tmp_path), split="eval", batch_size=4, seed=0, train=False)
    list(itertools.islice(train.epoch(3), 5))
    list(evaluated)
    assert sorted(read) == sorted([("train.npz", "x"), ("train.npz", "y"), ("train.npz", "classes"),
                                   ("eval.npz", "x"), ("eval.npz", "y"), ("eval.npz", "classes"),
                                   ("train.npz", "y"), ("train.npz", "classes")])
    assert info.num_classes == 10


def test_the_eval_split_still_checks_the_train_files_image_layout(tmp_path):
    """Without reading them: the .npy header of the train file's images gives dtype and shape."""
    write_npz(tmp_path / "eval.npz", 3)
    np.savez(tmp_path / "train.npz", x=np.zeros((3, 4, 4, 3), np.float32), y=np.zeros(3, int))
    with pytest.raises(ValueError, match=r"config.dataset.train_path: .*train\.npz: x must be uint8 \[N, H, W, C\], "
                                         r"got float32 \(3, 4, 4, 3\)"):
        build_split(tmp_path, "eval")
    np.savez(tmp_path / "train.npz", x=np.zeros((3, 4, 4, 3), np.uint8), y=np.zeros(2, int))
    with pytest.raises(ValueError,
                       match=r"config.dataset.train_path: .*train\.npz: y must be \[N=3\], got shape \(2,\)"):
        build_split(tmp_path, "eval")
    np.savez_compressed(tmp_path / "train.npz", x=np.zeros((3, 4, 4, 3), np.uint8), y=np.array([0, 1, 11]))
    _, info = build_split(tmp_path, "eval")
    assert info.num_classes == 12


@pytest.mark.parametrize("augment", [False, True])
def test_train_epochs_keep_the_reference_order(tmp_path, augment):
    """epoch(e) of the train stream: the order (and augmentation) training runs have always
    used, past the end of a pass; CIFAR's preprocessing, as in the paper's data setup."""
    arrays = write_npz(tmp_path / "train.npz", 11)
    stream, _ = data.build(config(tmp_path, augment=augment), split="train", batch_size=3, seed=2, train=True)
    train, evaluate = cifar.preprocessing("cifar10")
    preprocess = train if augment else (lambda raw, rng: evaluate(raw))
    for epoch in (0, 1, 6):
        expected = reference_batches(arrays["x"], arrays["y"], 3, 2, epoch, 7, preprocess)
        assert_batches_equal(itertools.islice(stream.epoch(epoch), 7), expected)


def write_labels(path, labels, *, class_count=None):
    """A tiny .npz with the given labels `y` (2 x 2 images) and `class_count` class names."""
    labels = np.asarray(labels)
    arrays = dict(x=np.zeros((len(labels), 2, 2, 3), np.uint8), y=labels)
    if class_count is not None:
        arrays["classes"] = np.array([f"class{i}" for i in range(class_count)])
    np.savez(path, **arrays)


def build_split(tmp_path, split):
    return data.build(config(tmp_path), split=split, batch_size=2, seed=0, train=split == "train")


@pytest.mark.parametrize("with_classes", [True, False])
def test_negative_labels_are_rejected_naming_file_values_and_range(tmp_path, with_classes):
    write_labels(tmp_path / "train.npz", [0, -1, 3, -7, -1, 2], class_count=10 if with_classes else None)
    with pytest.raises(ValueError) as error:
        build_split(tmp_path, "train")
    message = str(error.value)
    assert "config.dataset.train_path" in message and str(tmp_path / "train.npz") in message
    assert "3 of 6 examples" in message and "-7, -1" in message
    assert ("[0, 10)" if with_classes else ">= 0") in message


def test_labels_beyond_the_files_classes_are_rejected(tmp_path):
    write_labels(tmp_path / "eval.npz", [0, 4, 5, 9, 4], class_count=4)
    with pytest.raises(ValueError) as error:
        build_split(tmp_path, "eval")
    message = str(error.value)
    assert "config.dataset.eval_path" in message and str(tmp_path / "eval.npz") in message
    assert "[0, 4)" in message and "4 of 5 examples" in message and "4, 5, 9" in message


def test_many_distinct_bad_labels_are_quoted_in_part(tmp_path):
    write_labels(tmp_path / "train.npz", np.arange(20), class_count=3)
    with pytest.raises(ValueError, match=r"17 of 20 examples out of range \(labels 3, 4, 5, 6, 7 \(and 12 more values\)\)"):
        build_split(tmp_path, "train")


def test_non_integer_labels_are_rejected(tmp_path):
    write_labels(tmp_path / "train.npz", [0.0, 1.0, 2.5], class_count=3)
    with pytest.raises(ValueError, match=r"train\.npz: y must hold integer class indices, got dtype float64"):
        build_split(tmp_path, "train")


def test_eval_labels_must_lie_in_the_train_files_classes(tmp_path):
    """The head has the train file's max(y) + 1 = 5 outputs: eval labels 5 and 8 cannot be scored."""
    write_labels(tmp_path / "train.npz", [0, 4, 2, 1])
    write_labels(tmp_path / "eval.npz", [0, 5, 8, 5, 1])
    _, train_info = build_split(tmp_path, "train")
    assert train_info.num_classes == 5
    with pytest.raises(ValueError) as error:
        build_split(tmp_path, "eval")
    message = str(error.value)
    assert "config.dataset.eval_path" in message and str(tmp_path / "eval.npz") in message
    assert "config.dataset.train_path" in message and str(tmp_path / "train.npz") in message
    assert "[0, 5)" in message and "3 of 5 examples" in message and "5, 8" in message


def test_eval_classes_array_must_match_the_train_ones_in_length(tmp_path):
    write_labels(tmp_path / "train.npz", [0, 1, 2], class_count=10)
    write_labels(tmp_path / "eval.npz", [0, 1, 2], class_count=100)
    with pytest.raises(ValueError) as error:
        build_split(tmp_path, "eval")
    message = str(error.value)
    assert str(tmp_path / "eval.npz") in message and str(tmp_path / "train.npz") in message
    assert "has 100 classes" in message and "has 10" in message
    assert "config.dataset.eval_path" in message and "config.dataset.train_path" in message


def test_eval_split_reports_the_train_files_class_count(tmp_path):
    """The network's head is sized by the train split; the eval split says the same count
    (its own max(y) + 1 would be 3), and falls back to its own without a train file."""
    write_labels(tmp_path / "eval.npz", [0, 2, 1])
    _, alone = build_split(tmp_path, "eval")
    assert alone.num_classes == 3
    write_labels(tmp_path / "train.npz", [0, 6, 1], class_count=7)
    _, info = build_split(tmp_path, "eval")
    assert info.num_classes == 7


def test_missing_classes_array_is_logged_once(tmp_path, caplog):
    """The train and eval builds of two runs in one process: one warning about the train
    file; none about the eval file, whose own count is not used."""
    write_labels(tmp_path / "train.npz", [0, 9, 3])
    write_labels(tmp_path / "eval.npz", [0, 2])
    with caplog.at_level(logging.INFO, logger="glif_jax.data.npz"):
        for seed in range(2):
            data.build(config(tmp_path), split="train", batch_size=2, seed=seed, train=True)
            data.build(config(tmp_path), split="eval", batch_size=2, seed=seed, train=False)
    records = [record for record in caplog.records if "`classes`" in record.getMessage()]
    assert [record.getMessage() for record in records] == [
        f"npz {tmp_path / 'train.npz'} has no `classes` array: using max(y)+1 = 10 classes"]
    assert records[0].levelno == logging.WARNING


def test_process_shards_are_disjoint_and_cover_the_split(tmp_path):
    write_npz(tmp_path / "train.npz", 9)
    write_npz(tmp_path / "eval.npz", 7, seed=1)
    for split in ("train", "eval"):
        assert_shards_partition_the_split(config(tmp_path, augment=False), split, eval_batch_size=2,
                                          train_batch_size=2 if split == "train" else 3)

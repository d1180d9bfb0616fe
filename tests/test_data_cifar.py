"""CIFAR-10/100 through tensorflow-datasets' real builders (the paper's data setup).

The fixture writes tiny archives in the original binary layout (cifar-10-binary.tar.gz:
cifar-10-batches-bin/data_batch_{1..5}.bin, test_batch.bin, batches.meta.txt, records of
1 label byte + 3072 pixel bytes (R, G, B planes, row-major); cifar-100-binary.tar.gz:
coarse + fine label bytes) into tfds's manual download folder, and lets tfds convert them.
The only thing patched is tfds's registry of archive checksums, which knows the real
archives' sizes and hashes, not ours.
"""

import io
import itertools
import os
import shutil
import tarfile

import numpy as np
import pytest

from glif_jax import data
from glif_jax.data import cifar
from glif_jax.data.tf_host import import_tfds
from tests.data_reference import assert_batches_equal, reference_batches
from tests.shard_checks import assert_shards_partition_the_split

CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465])
CIFAR10_STD = np.array([0.247, 0.243, 0.261])
CIFAR100_MEAN = np.array([0.5071, 0.4867, 0.4408])
CIFAR100_STD = np.array([0.2675, 0.2565, 0.2761])
CIFAR10_NAMES = "airplane automobile bird cat deer dog frog horse ship truck".split()


def records(rng, count, label_bytes):
    """(labels [count, label_bytes], images [count, 32, 32, 3], file bytes)."""
    labels = np.stack([rng.integers(0, high, count, dtype=np.uint8) for high in label_bytes], 1)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    planes = images.transpose(0, 3, 1, 2).reshape(count, 3072)
    return labels, images, np.concatenate([labels, planes], axis=1).tobytes()


def write_tar_gz(path, members):
    with tarfile.open(path, "w:gz") as archive:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))


def register_archive(monkeypatch, tfds_name, url, path):
    """Makes tfds accept our archive in place of the original (checksum registry only)."""
    tfds = import_tfds()
    from tensorflow_datasets.core.download import checksums

    computed = checksums.compute_url_info(path)
    builder_class = tfds.builder_cls(tfds_name)
    infos = dict(builder_class.url_infos or {})
    infos[url] = checksums.UrlInfo(size=computed.size, checksum=computed.checksum,
                                   filename=os.path.basename(path))
    monkeypatch.setattr(builder_class, "url_infos", infos)


@pytest.fixture(scope="module")
def cifar_data_dir(tmp_path_factory):
    """A tfds data_dir with both original archives in downloads/manual; returns
    (data_dir, what was written)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    manual = data_dir / "downloads" / "manual"
    manual.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}

    train_parts = [records(rng, 2, [10]) for _ in range(5)]
    test_part = records(rng, 3, [10])
    members = {f"cifar-10-batches-bin/data_batch_{i + 1}.bin": part[2] for i, part in enumerate(train_parts)}
    members["cifar-10-batches-bin/test_batch.bin"] = test_part[2]
    members["cifar-10-batches-bin/batches.meta.txt"] = ("\n".join(CIFAR10_NAMES) + "\n").encode()
    write_tar_gz(manual / "cifar-10-binary.tar.gz", members)
    written["cifar10"] = {
        "train": (np.concatenate([p[1] for p in train_parts]), np.concatenate([p[0][:, 0] for p in train_parts])),
        "eval": (test_part[1], test_part[0][:, 0]),
    }

    train_100, test_100 = records(rng, 4, [20, 100]), records(rng, 3, [20, 100])
    write_tar_gz(manual / "cifar-100-binary.tar.gz", {
        "cifar-100-binary/train.bin": train_100[2],
        "cifar-100-binary/test.bin": test_100[2],
        "cifar-100-binary/coarse_label_names.txt": "\n".join(f"coarse{i}" for i in range(20)).encode(),
        "cifar-100-binary/fine_label_names.txt": "\n".join(f"fine{i}" for i in range(100)).encode(),
    })
    written["cifar100"] = {"train": (train_100[1], train_100[0][:, 1]), "eval": (test_100[1], test_100[0][:, 1])}

    with pytest.MonkeyPatch.context() as monkeypatch:
        register_archive(monkeypatch, "cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                         manual / "cifar-10-binary.tar.gz")
        register_archive(monkeypatch, "cifar100", "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                         manual / "cifar-100-binary.tar.gz")
        for name in ("cifar10", "cifar100"):  # the first build converts the archive
            data.build({"name": name, "data_dir": str(data_dir)}, split="eval", batch_size=2, seed=0, train=False)
    shutil.rmtree(manual)  # from now on only the prepared tfds data exists
    return data_dir, written


def one_pass(data_dir, name, split, batch_size=4, **kwargs):
    batches, info = data.build({"name": name, "data_dir": str(data_dir), "prefetch": 0}, split=split,
                               batch_size=batch_size, seed=0, train=False, **kwargs)
    collected = list(batches)
    mask = np.concatenate([b["mask"] for b in collected]) == 1
    return (np.concatenate([b["image"] for b in collected])[mask],
            np.concatenate([b["label"] for b in collected])[mask], info)


@pytest.mark.parametrize("split", ["train", "eval"])
def test_cifar10_comes_out_as_written_in_file_order(cifar_data_dir, split):
    """The paper's data setup: official train/test split; eval = scale to [0, 1] and normalise."""
    data_dir, written = cifar_data_dir
    images, labels, info = one_pass(data_dir, "cifar10", split)
    expected_images, expected_labels = written["cifar10"][split]
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(images, (expected_images / 255.0 - CIFAR10_MEAN) / CIFAR10_STD, atol=1e-5)
    assert info == data.DatasetInfo("cifar10", 10, len(expected_labels), (32, 32, 3))


def test_cifar100_uses_fine_labels_and_its_own_normalisation(cifar_data_dir):
    """The paper's data setup: CIFAR-100 mean/std; label = the fine label (second label byte)."""
    data_dir, written = cifar_data_dir
    images, labels, info = one_pass(data_dir, "cifar100", "train")
    expected_images, expected_labels = written["cifar100"]["train"]
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(images, (expected_images / 255.0 - CIFAR100_MEAN) / CIFAR100_STD, atol=1e-5)
    assert info.num_classes == 100 and info.num_examples == 4


def test_cifar10_eval_shards_split_the_test_set(cifar_data_dir):
    data_dir, written = cifar_data_dir
    parts = [one_pass(data_dir, "cifar10", "eval", batch_size=1, shard_index=k, shard_count=2)[1]
             for k in range(2)]
    np.testing.assert_array_equal(np.concatenate([parts[0], parts[1]]),
                                  written["cifar10"]["eval"][1][[0, 2, 1]])


def test_cifar10_train_stream_is_augmented(cifar_data_dir):
    """The paper's data setup train: every image is a crop of the zero-padded original, maybe mirrored."""
    data_dir, written = cifar_data_dir
    batches, _ = data.build({"name": "cifar10", "data_dir": str(data_dir)}, split="train",
                            batch_size=5, seed=3, train=True)
    originals = {int(label): [] for label in range(10)}
    for image, label in zip(*written["cifar10"]["train"]):
        originals[int(label)].append(image)
    batch = next(iter(batches))
    pixels = np.rint((batch["image"] * CIFAR10_STD + CIFAR10_MEAN) * 255).astype(np.int64)
    changed = 0
    for image, label in zip(pixels, batch["label"]):
        candidates = []
        for original in originals[int(label)]:
            padded = np.pad(original, ((4, 4), (4, 4), (0, 0))).astype(np.int64)
            for view in (padded, padded[:, ::-1]):
                candidates += [(r, c) for r in range(9) for c in range(9)
                               if np.array_equal(view[r:r + 32, c:c + 32], image)]
        assert candidates
        changed += (4, 4) not in candidates
    assert changed > 0


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("shard_index, shard_count", [(0, 1), (1, 2)])
def test_train_epochs_keep_the_reference_order(cifar_data_dir, augment, shard_index, shard_count):
    """epoch(e) of the train stream, built once: the order and augmentation training runs
    have always used for epoch e, past the end of a pass (the paper's data setup preprocessing)."""
    data_dir, written = cifar_data_dir
    images, labels = written["cifar10"]["train"]
    stream, _ = data.build({"name": "cifar10", "data_dir": str(data_dir), "augment": augment}, split="train",
                           batch_size=2, seed=4, train=True, shard_index=shard_index, shard_count=shard_count)
    train, evaluate = cifar.preprocessing("cifar10")
    preprocess = train if augment else (lambda raw, rng: evaluate(raw))
    count = 2 * (10 // shard_count // 2) + 1
    for epoch in (2, 0, 1):
        expected = reference_batches(images, labels, 2, 4, epoch, count, preprocess,
                                     shard_index=shard_index, shard_count=shard_count)
        assert_batches_equal(itertools.islice(stream.epoch(epoch), count), expected)


def test_missing_cifar_says_where_to_put_it_and_how_to_get_it(tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as error:
        data.build({"name": "cifar10", "data_dir": str(tmp_path)}, split="train", batch_size=2, seed=0, train=True)
    message = str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    assert str(tmp_path / "downloads" / "manual") in message
    assert "cifar-10-binary.tar.gz" in message and "https://www.cs.toronto.edu/~kriz/" in message
    assert "tfds build cifar10" in message


def test_unprepared_cifar_is_not_converted_by_several_processes(tmp_path):
    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    (manual / "cifar-100-binary.tar.gz").write_bytes(b"not read")
    with pytest.raises(data.DatasetNotFoundError, match="tfds build cifar100"):
        data.build({"name": "cifar100", "data_dir": str(tmp_path)}, split="train", batch_size=2, seed=0,
                   train=True, shard_index=1, shard_count=2)


@pytest.mark.parametrize("split", ["train", "eval"])
def test_process_shards_are_disjoint_and_cover_the_split(cifar_data_dir, split):
    data_dir, _ = cifar_data_dir
    assert_shards_partition_the_split({"name": "cifar10", "data_dir": str(data_dir), "prefetch": 0, "augment": False},
                                      split, eval_batch_size=2, train_batch_size=1)

"""ImageNet through tensorflow-datasets' real `imagenet2012` builder (the paper's data setup).

The fixture writes a tiny copy of the manual download in its original layout —
ILSVRC2012_img_train.tar holding one tar per class (n01440764.tar, ...) of JPEGs, and
ILSVRC2012_img_val.tar holding ILSVRC2012_val_0000000k.JPEG, whose labels tfds reads
from its own validation_labels.txt — and lets tfds convert it. Preprocessing is checked
against PIL references and against torchvision's RandomResizedCrop rules.
"""

import io
import itertools
import tarfile

import numpy as np
import pytest
from PIL import Image

from glif_jax import data
from glif_jax.data.tf_host import import_tensorflow, import_tfds
from tests.data_reference import assert_batches_equal, reference_epoch_seed
from tests.shard_checks import assert_shards_partition_the_split

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
TRAIN_CLASSES = ("n01440764", "n01443537")  # the first two of tfds's labels.txt: labels 0, 1


def smooth_image(rng, height, width):
    """A smooth uint8 RGB image (resampling-friendly)."""
    rows = np.linspace(0, 1, height)[:, None, None]
    columns = np.linspace(0, 1, width)[None, :, None]
    phase = rng.random(3) * 6
    image = 127.5 + 120 * np.sin(12 * rows + 9 * columns + phase)
    return np.clip(image, 0, 255).astype(np.uint8)


def jpeg_bytes(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def tar_bytes(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def validation_labels(count):
    tfds = import_tfds()
    names = tfds.core.tfds_path("datasets/imagenet2012/labels.txt").read_text().split()
    synsets = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt").read_text().split()
    return [names.index(synset) for synset in synsets[:count]]


@pytest.fixture(scope="module")
def imagenet_data_dir(tmp_path_factory):
    """tfds data_dir prepared from the tiny manual download; returns (data_dir, val JPEGs)."""
    data_dir = tmp_path_factory.mktemp("tfds_imagenet")
    manual = data_dir / "downloads" / "manual"
    manual.mkdir(parents=True)
    rng = np.random.default_rng(0)
    class_tars = {}
    for synset in TRAIN_CLASSES:
        class_tars[f"{synset}.tar"] = tar_bytes(
            {f"{synset}_{k}.JPEG": jpeg_bytes(smooth_image(rng, 50 + 10 * k, 70)) for k in range(2)}
        )
    (manual / "ILSVRC2012_img_train.tar").write_bytes(tar_bytes(class_tars))
    val_jpegs = [jpeg_bytes(smooth_image(rng, *shape)) for shape in [(60, 80), (90, 45), (64, 64)]]
    (manual / "ILSVRC2012_img_val.tar").write_bytes(
        tar_bytes({f"ILSVRC2012_val_{k + 1:08d}.JPEG": payload for k, payload in enumerate(val_jpegs)})
    )
    data.build({"name": "imagenet2012", "data_dir": str(data_dir)}, split="eval", batch_size=2, seed=0,
               train=False)
    return data_dir, val_jpegs


def reference_eval_image(payload):
    """torchvision's Resize(256) + CenterCrop(224) on the PIL image, then normalise.
    (Decoded by TF: PIL's JPEG decoder differs by ~1 level, which would hide geometry.)"""
    image = Image.fromarray(import_tensorflow().image.decode_jpeg(payload, channels=3).numpy())
    width, height = image.size
    if width <= height:
        size = (256, int(256 * height / width))
    else:
        size = (int(256 * width / height), 256)
    image = image.resize(size, Image.BILINEAR)
    top = int(round((size[1] - 224) / 2.0))
    left = int(round((size[0] - 224) / 2.0))
    crop = np.asarray(image, np.float64)[top:top + 224, left:left + 224]
    return (crop / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def test_validation_images_and_labels(imagenet_data_dir):
    """The paper's data setup eval: resize 256, centre crop 224, normalise; labels from tfds's list."""
    data_dir, val_jpegs = imagenet_data_dir
    batches, info = data.build({"name": "imagenet2012", "data_dir": str(data_dir)}, split="eval",
                               batch_size=2, seed=0, train=False)
    collected = list(batches)
    assert len(batches) == len(collected) == 2
    np.testing.assert_array_equal(collected[-1]["mask"], [1, 0])
    assert (collected[-1]["image"][1] == 0).all()
    images = np.concatenate([b["image"] for b in collected])[:3]
    labels = np.concatenate([b["label"] for b in collected])[:3]
    assert info == data.DatasetInfo("imagenet2012", 1000, 3, (224, 224, 3))
    # tfds yields the validation images in its own (deterministic) order: match by label.
    expected_labels = validation_labels(3)
    assert sorted(labels.tolist()) == sorted(expected_labels)
    for image, label in zip(images, labels):
        reference = reference_eval_image(val_jpegs[expected_labels.index(label)])
        assert image.shape == (224, 224, 3) and image.dtype == np.float32
        assert np.abs(image - reference).mean() < 0.01  # PIL rounds to whole levels
        assert np.abs(image - reference).max() < 0.05


def test_validation_shards_cover_the_split_once_with_equal_lengths(imagenet_data_dir):
    """Multi-host eval: disjoint shards, same number of batches, every image once."""
    data_dir, _ = imagenet_data_dir
    labels, lengths = [], set()
    for shard in range(2):
        batches, _ = data.build({"name": "imagenet2012", "data_dir": str(data_dir)}, split="eval",
                                batch_size=2, seed=0, train=False, shard_index=shard, shard_count=2)
        collected = list(batches)
        lengths.add(len(collected))
        labels += [label for b in collected for label, m in zip(b["label"], b["mask"]) if m == 1]
    assert lengths == {1}
    assert sorted(labels) == sorted(validation_labels(3))


def test_train_stream_labels_shapes_and_reproducibility(imagenet_data_dir):
    """The paper's data setup train: random resized crop 224 + flip; the stream is infinite and seeded."""
    data_dir, _ = imagenet_data_dir

    def first_batches(seed, count=3):
        batches, info = data.build({"name": "imagenet2012", "data_dir": str(data_dir)}, split="train",
                                   batch_size=3, seed=seed, train=True)
        iterator = iter(batches)
        return [next(iterator) for _ in range(count)], info

    batches, info = first_batches(seed=1)
    assert info.num_examples == 4
    for batch in batches:  # 9 examples from 4: the stream repeats
        assert batch["image"].shape == (3, 224, 224, 3) and batch["mask"].all()
        assert set(batch["label"].tolist()) <= {0, 1}
        assert np.isfinite(batch["image"]).all()
    again, _ = first_batches(seed=1)
    other, _ = first_batches(seed=2)
    for a, b in zip(batches, again):
        np.testing.assert_array_equal(a["image"], b["image"])
    assert not all(np.array_equal(a["image"], b["image"]) for a, b in zip(batches, other))


def reference_train_batches(data_dir, seed, epoch, batch_size, count, shard_index=0, shard_count=1):
    """The train batches of epoch ``epoch`` as training runs have always read them: tf.data
    seeded with S = reference_epoch_seed(seed, epoch) for the file order and a 10 000-example
    shuffle buffer (reshuffled every pass), example i of this shard augmented with the
    stateless seed fold_in([S, shard_index], i)."""
    from glif_jax.data.imagenet_preprocess import train_image

    tf, tfds = import_tensorflow(), import_tfds()
    data_seed = reference_epoch_seed(seed, epoch)
    options = tf.data.Options()
    options.deterministic = True
    examples = tfds.builder("imagenet2012", data_dir=str(data_dir)).as_dataset(
        split=tfds.even_splits("train", n=shard_count, drop_remainder=True)[shard_index],
        shuffle_files=True, decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(shuffle_seed=data_seed, options=options))
    base = tf.constant([data_seed, shard_index], tf.int64)
    batches = (examples.shuffle(10_000, seed=data_seed, reshuffle_each_iteration=True).repeat().enumerate()
               .map(lambda index, example: {
                   "image": train_image(example["image"], tf.random.experimental.stateless_fold_in(base, index)),
                   "label": tf.cast(example["label"], tf.int32)})   # the pipelines' label dtype
               .batch(batch_size, drop_remainder=True))
    return list(itertools.islice(tfds.as_numpy(batches), count))


@pytest.mark.parametrize("shard_index, shard_count", [(0, 1), (1, 2)])
def test_train_epochs_keep_the_reference_order(imagenet_data_dir, shard_index, shard_count):
    """epoch(e) of the train stream, built once: the batches training runs have always read in
    epoch e (past the end of a pass: 4 images, batches of 3)."""
    data_dir, _ = imagenet_data_dir
    stream, _ = data.build({"name": "imagenet2012", "data_dir": str(data_dir)}, split="train",
                           batch_size=3 // shard_count, seed=6, train=True, shard_index=shard_index,
                           shard_count=shard_count)
    for epoch in (1, 0):
        expected = reference_train_batches(data_dir, 6, epoch, 3 // shard_count, 3, shard_index, shard_count)
        assert_batches_equal(itertools.islice(stream.epoch(epoch), 3), expected)


def test_missing_imagenet_gives_manual_download_instructions(tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as error:
        data.build({"name": "imagenet2012", "data_dir": str(tmp_path)}, split="eval", batch_size=2, seed=0,
                   train=False)
    message = str(error.value)
    assert str(tmp_path / "downloads" / "manual") in message
    assert "ILSVRC2012_img_train.tar" in message and "ILSVRC2012_img_val.tar" in message
    assert "image-net.org" in message


def crop_windows(shape, seeds):
    from glif_jax.data.imagenet_preprocess import sample_crop_window

    tf = import_tensorflow()
    return np.array([
        [int(v) for v in sample_crop_window(tf.constant(shape, tf.int32), tf.constant([s, 7], tf.int64))]
        for s in seeds
    ])


def test_random_resized_crop_window_follows_torchvision_rules():
    """The paper's data setup: scale (0.2, 1.0) of the area, aspect ratio in [3/4, 4/3], inside the image,
    offsets spread over the free room."""
    windows = crop_windows([300, 400, 3], range(60))
    offset_y, offset_x, height, width = windows.T
    assert (height >= 1).all() and (width >= 1).all()
    assert (offset_y >= 0).all() and (offset_y + height <= 300).all()
    assert (offset_x >= 0).all() and (offset_x + width <= 400).all()
    area = height * width / (300 * 400)
    assert area.min() > 0.19 and area.max() <= 1.0 and area.max() - area.min() > 0.4
    ratio = width / height
    assert ratio.min() > 0.74 and ratio.max() < 1.35
    assert len(set(map(tuple, windows))) == 60


def test_random_resized_crop_falls_back_to_a_centred_clamped_crop():
    """A 10 x 1000 image admits no crop of >= 20 % of its area with ratio <= 4/3:
    torchvision takes the full height, width round(10 * 4/3) = 13, centred."""
    windows = crop_windows([10, 1000, 3], range(3))
    np.testing.assert_array_equal(windows, [[0, (1000 - 13) // 2, 10, 13]] * 3)


def test_resize_shorter_side_and_centre_crop_sizes():
    from glif_jax.data.imagenet_preprocess import center_crop, resize_shorter_side

    tf = import_tensorflow()
    for (height, width), expected in [((375, 500), (256, 341)), ((500, 375), (341, 256)), ((30, 30), (256, 256))]:
        resized = resize_shorter_side(tf.zeros([height, width, 3]))
        assert tuple(resized.shape[:2]) == expected
    rows = tf.reshape(tf.range(231, dtype=tf.float32), [231, 1, 1]) * tf.ones([231, 240, 1])
    cropped = center_crop(rows)
    assert tuple(cropped.shape) == (224, 224, 1)
    assert float(cropped[0, 0, 0]) == 4.0  # round((231 - 224) / 2) = round(3.5) = 4


def test_process_shards_of_the_train_split_are_disjoint_and_cover_it(imagenet_data_dir):
    """As train streams (unaugmented) and as eval passes; the validation split's passes: above."""
    data_dir, _ = imagenet_data_dir
    assert_shards_partition_the_split({"name": "imagenet2012", "data_dir": str(data_dir), "augment": False},
                                      "train", eval_batch_size=3, train_batch_size=1)

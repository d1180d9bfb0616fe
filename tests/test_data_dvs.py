"""CIFAR10-DVS through tonic (the paper's data setup): 16 equal-event-count frames resized to 48 x 48,
per-class 90/10 split, frames cached on disk, train-time random crop.

The fixture writes real AEDAT4 files (the format tonic's CIFAR10DVS reads through the
`aedat` package: magic line, size-prefixed flatbuffers IOHeader with the XML stream
description, then size-prefixed EventPacket flatbuffers of (t int64, x int16, y int16,
on bool) structs) in tonic's folder layout <save_to>/CIFAR10DVS/<class>/*.aedat4.
"""

import itertools
import json
import logging
import math
import os
import shutil

import flatbuffers
import numpy as np
import pytest

from glif_jax import data
from glif_jax.data import dvs
from glif_jax.data.augment import random_crop
from glif_jax.data.dvs_frames import PAPER_FRAMING, Framing
from glif_jax.data.tf_host import import_tensorflow
from tests.data_reference import assert_batches_equal, reference_batches
from tests.shard_checks import assert_shards_partition_the_split

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MAGIC = b"#!AER-DAT4.0\r\n"
DESCRIPTION = (
    '<dv version="2.0"><node name="outInfo"><node name="0">'
    '<attr key="typeIdentifier" type="string">EVTS</attr>'
    '<node name="info"><attr key="sizeX" type="int">128</attr>'
    '<attr key="sizeY" type="int">128</attr></node></node></node></dv>'
)


def aedat4_header():
    builder = flatbuffers.Builder(512)
    description = builder.CreateString(DESCRIPTION)
    builder.StartObject(3)  # Ioheader: compression (None), file_data_position (-1), description
    builder.PrependUOffsetTRelativeSlot(2, description, 0)
    builder.FinishSizePrefixed(builder.EndObject(), b"IOHE")
    return bytes(builder.Output())


def aedat4_event_packet(events):
    builder = flatbuffers.Builder(64 + 16 * len(events))
    builder.StartVector(16, len(events), 8)
    for t, x, y, p in reversed(events):  # struct Event {t: int64; x: int16; y: int16; on: bool}
        builder.Prep(8, 16)
        builder.Pad(3)
        builder.PrependBool(bool(p))
        builder.PrependInt16(int(y))
        builder.PrependInt16(int(x))
        builder.PrependInt64(int(t))
    elements = builder.EndVector()
    builder.StartObject(1)
    builder.PrependUOffsetTRelativeSlot(0, elements, 0)
    builder.FinishSizePrefixed(builder.EndObject(), b"EVTS")
    payload = bytes(builder.Output())
    return (0).to_bytes(4, "little") + len(payload).to_bytes(4, "little") + payload


def write_recording(path, events):
    """events: int array [N, 4] of (t µs, x, y, polarity); written as two packets."""
    half = len(events) // 2
    path.write_bytes(MAGIC + aedat4_header() + aedat4_event_packet(events[:half])
                     + aedat4_event_packet(events[half:]))


def reference_frames(events):
    """The paper's data setup, independently: 16 slices of N // 16 consecutive events (tonic drops the
    last N % 16), per-pixel per-polarity counts [16, 128 (y), 128 (x), 2], resized to
    48 x 48 bilinearly with half-pixel centres and no antialiasing (TF's resize)."""
    per_slice = len(events) // 16
    counts = np.zeros((16, 128, 128, 2), np.float32)
    for index in range(16):
        for t, x, y, p in events[index * per_slice:(index + 1) * per_slice]:
            counts[index, y, x, p] += 1
    tf = import_tensorflow()
    return tf.image.resize(counts, [48, 48], method="bilinear", antialias=False).numpy()


def random_events(rng, count):
    """int [count, 4] events (t µs sorted, x, y, polarity) on the 128 x 128 sensor."""
    return np.stack([np.sort(rng.integers(0, 10**6, count)), rng.integers(0, 128, count),
                     rng.integers(0, 128, count), rng.integers(0, 2, count)], 1)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """save_to folder with 10 recordings per class (12 for "truck"); returns
    (data_dir, {class label: [(file name, events), ...] in file-name order})."""
    data_dir = tmp_path_factory.mktemp("tonic")
    rng = np.random.default_rng(0)
    written = {}
    for label, name in enumerate(CLASSES):
        folder = data_dir / "CIFAR10DVS" / name
        folder.mkdir(parents=True)
        items = []
        for k in range(12 if name == "truck" else 10):
            count = int(rng.integers(40, 90))
            events = random_events(rng, count)
            file_name = f"cifar10_{name}_{k}.aedat4"
            write_recording(folder / file_name, events)
            items.append((file_name, events))
        written[label] = sorted(items, key=lambda item: item[0])
    return data_dir, written


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One frame cache for the tests that only read (each split converted once)."""
    return tmp_path_factory.mktemp("dvs_cache")


def expected_split(written, split):
    """The paper's data setup: the first 90 % (ceil) of every class, in file-name order, train."""
    chosen = []
    for label in range(10):
        cut = math.ceil(len(written[label]) * 0.9)
        part = written[label][:cut] if split == "train" else written[label][cut:]
        chosen += [(label, name, events) for name, events in part]
    return chosen


def one_pass(data_dir, cache_dir, split, batch_size=4):
    batches, info = data.build({"name": "cifar10_dvs", "data_dir": str(data_dir), "cache_dir": str(cache_dir)},
                               split=split, batch_size=batch_size, seed=0, train=False)
    collected = list(batches)
    mask = np.concatenate([b["mask"] for b in collected]) == 1
    return (np.concatenate([b["image"] for b in collected])[mask],
            np.concatenate([b["label"] for b in collected])[mask], info)


def test_eval_frames_labels_and_split_match_the_reference(recordings, shared_cache):
    """The paper's data setup: 16 equal-event-count frames, 48 x 48, per-class split (file-name order:
    for "truck", cifar10_truck_9 sorts after _10, _11, ... and is the one eval recording)."""
    data_dir, written = recordings
    frames, labels, info = one_pass(data_dir, shared_cache, "eval")
    expected = expected_split(written, "eval")
    assert [name for _, name, _ in expected][-1] == "cifar10_truck_9.aedat4"
    assert info == data.DatasetInfo("cifar10_dvs", 10, 10, (16, 48, 48, 2))
    assert frames.shape == (10, 16, 48, 48, 2) and frames.dtype == np.float32
    np.testing.assert_array_equal(labels, [label for label, _, _ in expected])
    for frame, (_, _, events) in zip(frames, expected):
        np.testing.assert_allclose(frame, reference_frames(events), atol=1e-5)
    assert frames.sum() > 0


def test_train_split_holds_the_first_90_percent_of_each_class(recordings, shared_cache):
    data_dir, written = recordings
    frames, labels, info = one_pass(data_dir, shared_cache, "train", batch_size=32)
    expected = expected_split(written, "train")
    assert info.num_examples == len(expected) == 9 * 9 + 11
    np.testing.assert_array_equal(labels, [label for label, _, _ in expected])
    for index in (0, 45, len(expected) - 1):
        np.testing.assert_allclose(frames[index], reference_frames(expected[index][2]), atol=1e-5)


def test_converted_frames_are_cached_and_events_never_reread(recordings, tmp_path, monkeypatch, caplog):
    """After the first conversion the whole recordings folder can vanish: later builds use
    the cache unchecked, with a warning."""
    data_dir, _ = recordings
    copy = tmp_path / "tonic"
    shutil.copytree(data_dir, copy)
    cache = tmp_path / "cache"
    first, first_labels, _ = one_pass(copy, cache, "eval")
    paths = dvs.cache_paths(cache, "eval")
    assert sorted(path.name for path in cache.iterdir()) == sorted(
        path.name for path in (paths.frames, paths.labels, paths.manifest))
    shutil.rmtree(copy / "CIFAR10DVS")
    monkeypatch.setattr(dvs, "convert", lambda *args, **kwargs: pytest.fail("converted again"))
    with caplog.at_level(logging.WARNING, logger="glif_jax.data.dvs"):
        again, again_labels, _ = one_pass(copy, cache, "eval")
    assert any("without checking it against them" in record.getMessage() for record in caplog.records)
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(again_labels, first_labels)


def test_a_failed_conversion_leaves_no_cache_behind(recordings, tmp_path, monkeypatch):
    data_dir, _ = recordings
    original_read = dvs.read_events
    calls = []

    def failing_read(path):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("unreadable recording")
        return original_read(path)

    monkeypatch.setattr(dvs, "read_events", failing_read)
    with pytest.raises(OSError, match="unreadable recording"):
        one_pass(data_dir, tmp_path, "eval")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(dvs, "read_events", original_read)
    frames, _, _ = one_pass(data_dir, tmp_path, "eval")
    assert frames.shape == (10, 16, 48, 48, 2)


def test_train_stream_crops_all_frames_of_a_recording_alike(recordings, shared_cache):
    """The paper's data setup: train-time random crop 48 with 4-pixel zero padding (one window per
    recording, all 16 frames); labels kept."""
    data_dir, _ = recordings
    plain, plain_labels, _ = one_pass(data_dir, shared_cache, "train", batch_size=32)
    batches, _ = data.build({"name": "cifar10_dvs", "data_dir": str(data_dir), "cache_dir": str(shared_cache)},
                            split="train", batch_size=4, seed=1, train=True)
    shifted = 0
    for batch in itertools.islice(batches, 2):
        assert batch["image"].shape == (4, 16, 48, 48, 2)
        for frames, label in zip(batch["image"], batch["label"]):
            matches = []
            for original in plain[plain_labels == label]:
                padded = np.pad(original, ((0, 0), (4, 4), (4, 4), (0, 0)))
                matches += [(r, c) for r in range(9) for c in range(9)
                            if np.array_equal(padded[:, r:r + 48, c:c + 48], frames)]
            assert matches
            shifted += (4, 4) not in matches
    assert shifted > 0


@pytest.mark.parametrize("augment", [False, True])
def test_train_epochs_keep_the_reference_order(recordings, shared_cache, augment):
    """epoch(e) of the train stream, built once: the order and crops training runs have always
    used for epoch e (92 recordings: 11 batches of 8 per pass, then the next pass)."""
    data_dir, _ = recordings
    frames, labels, _ = one_pass(data_dir, shared_cache, "train", batch_size=32)
    stream, _ = data.build({"name": "cifar10_dvs", "data_dir": str(data_dir), "cache_dir": str(shared_cache),
                            "augment": augment}, split="train", batch_size=8, seed=9, train=True)

    def preprocess(raw, rng):
        return random_crop(raw, rng, 4) if augment else raw

    for epoch in (0, 2):
        expected = reference_batches(frames, labels, 8, 9, epoch, 13, preprocess)
        assert_batches_equal(itertools.islice(stream.epoch(epoch), 13), expected)


def test_listing_agrees_with_tonics_own_dataset_class(recordings, monkeypatch):
    """Our file list and labels are tonic's (its download check bypassed), and events
    read by tonic's CIFAR10DVS equal ours."""
    from tonic.datasets import CIFAR10DVS

    data_dir, _ = recordings
    monkeypatch.setattr(CIFAR10DVS, "_check_exists", lambda self: True)
    tonic_dataset = CIFAR10DVS(save_to=str(data_dir))
    ours = dvs.list_recordings(data_dir)
    assert sorted((str(path), label) for path, label in ours) == sorted(zip(tonic_dataset.data, tonic_dataset.targets))
    index = tonic_dataset.data.index(str(ours[7][0]))
    tonic_events, _ = tonic_dataset[index]
    our_events = dvs.read_events(ours[7][0])
    for field in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(our_events[field], tonic_events[field])


def test_missing_recordings_say_where_and_how(tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as error:
        data.build({"name": "cifar10_dvs", "data_dir": str(tmp_path)}, split="train", batch_size=2, seed=0,
                   train=True)
    message = str(error.value)
    assert str(tmp_path / "CIFAR10DVS") in message
    assert "tonic.datasets.CIFAR10DVS" in message and "figshare" in message and "airplane" in message
    (tmp_path / "CIFAR10DVS" / "airplane").mkdir(parents=True)
    with pytest.raises(data.DatasetNotFoundError, match="automobile"):
        data.build({"name": "cifar10_dvs", "data_dir": str(tmp_path)}, split="train", batch_size=2, seed=0,
                   train=True)


@pytest.fixture
def small_dataset(tmp_path):
    """save_to folder: 10 "airplane" recordings (eval = cifar10_airplane_9), one of each
    other class (all train): 18 train and 1 eval recording."""
    data_dir = tmp_path / "tonic"
    rng = np.random.default_rng(1)
    for name in CLASSES:
        folder = data_dir / "CIFAR10DVS" / name
        folder.mkdir(parents=True)
        for k in range(10 if name == "airplane" else 1):
            write_recording(folder / f"cifar10_{name}_{k}.aedat4", random_events(rng, 32))
    return data_dir


@pytest.fixture
def conversions(monkeypatch):
    """The splits converted from now on, in order (the real conversion still runs)."""
    converted = []
    original_convert = dvs.convert

    def counting_convert(recordings, paths, contents, framing=PAPER_FRAMING):
        converted.append(contents["split"])
        return original_convert(recordings, paths, contents, framing)

    monkeypatch.setattr(dvs, "convert", counting_convert)
    return converted


def test_unchanged_recordings_reuse_the_cache(small_dataset, tmp_path, conversions):
    cache = tmp_path / "cache"
    first, first_labels = dvs.load_split(small_dataset, cache, "train")
    first = np.array(first)
    for _ in range(2):
        frames, labels = dvs.load_split(small_dataset, cache, "train")
    assert conversions == ["train"]
    np.testing.assert_array_equal(frames, first)
    np.testing.assert_array_equal(labels, first_labels)


def test_a_changed_recording_rebuilds_the_cache(small_dataset, tmp_path, conversions):
    """New events in the eval recording (another size): the cached frames are replaced by
    those of the new recording, as a fresh cache has them."""
    cache = tmp_path / "cache"
    old, _ = dvs.load_split(small_dataset, cache, "eval")
    old = np.array(old)
    recording = small_dataset / "CIFAR10DVS" / "airplane" / "cifar10_airplane_9.aedat4"
    size = recording.stat().st_size
    write_recording(recording, random_events(np.random.default_rng(7), 48))
    assert recording.stat().st_size != size
    new, labels = dvs.load_split(small_dataset, cache, "eval")
    assert conversions == ["eval", "eval"]
    assert not np.array_equal(new, old)
    fresh, _ = dvs.load_split(small_dataset, tmp_path / "fresh_cache", "eval")
    np.testing.assert_array_equal(new, fresh)
    np.testing.assert_array_equal(labels, [0])


def test_a_touched_recording_rebuilds_the_cache(small_dataset, tmp_path, conversions):
    """Same size, another modification time: converted again."""
    cache = tmp_path / "cache"
    dvs.load_split(small_dataset, cache, "eval")
    recording = small_dataset / "CIFAR10DVS" / "airplane" / "cifar10_airplane_9.aedat4"
    status = recording.stat()
    os.utime(recording, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))
    dvs.load_split(small_dataset, cache, "eval")
    assert conversions == ["eval", "eval"]


def test_an_added_recording_is_included(small_dataset, tmp_path, conversions):
    """A second "bird" recording (train: ceil(0.9 * 2) = 2) joins the cached train split."""
    cache = tmp_path / "cache"
    before, before_labels = dvs.load_split(small_dataset, cache, "train")
    assert len(before) == 18 and list(before_labels).count(2) == 1
    write_recording(small_dataset / "CIFAR10DVS" / "bird" / "cifar10_bird_1.aedat4",
                    random_events(np.random.default_rng(8), 40))
    after, after_labels = dvs.load_split(small_dataset, cache, "train")
    assert conversions == ["train", "train"]
    assert len(after) == 19 and list(after_labels).count(2) == 2
    fresh, fresh_labels = dvs.load_split(small_dataset, tmp_path / "fresh_cache", "train")
    np.testing.assert_array_equal(after, fresh)
    np.testing.assert_array_equal(after_labels, fresh_labels)


def test_another_framing_is_converted_into_its_own_cache(small_dataset, tmp_path, conversions):
    """8 frames instead of 16: converted anew into other files; the 16-frame cache stays
    valid and is used again without converting."""
    cache = tmp_path / "cache"
    sixteen, _ = dvs.load_split(small_dataset, cache, "eval")
    eight, _ = dvs.load_split(small_dataset, cache, "eval", Framing(frames=8))
    assert conversions == ["eval", "eval"]
    assert sixteen.shape == (1, 16, 48, 48, 2) and eight.shape == (1, 8, 48, 48, 2)
    assert dvs.cache_paths(cache, "eval", Framing(frames=8)).frames != dvs.cache_paths(cache, "eval").frames
    again, _ = dvs.load_split(small_dataset, cache, "eval")
    assert conversions == ["eval", "eval"]
    np.testing.assert_array_equal(again, sixteen)
    smaller, _ = dvs.load_split(small_dataset, cache, "eval", Framing(frame_size=32))
    assert conversions == ["eval", "eval", "eval"] and smaller.shape == (1, 16, 32, 32, 2)


def test_a_cache_without_its_manifest_is_rebuilt(small_dataset, tmp_path, conversions):
    """Frames whose manifest is missing or names other recordings (an interrupted or an old
    conversion) are never used."""
    cache = tmp_path / "cache"
    frames, _ = dvs.load_split(small_dataset, cache, "eval")
    expected = np.array(frames)
    paths = dvs.cache_paths(cache, "eval")
    np.save(paths.frames, np.zeros_like(expected))  # stale frames in place
    paths.manifest.unlink()
    frames, _ = dvs.load_split(small_dataset, cache, "eval")
    assert conversions == ["eval", "eval"]
    np.testing.assert_array_equal(frames, expected)
    manifest = dvs.read_manifest(paths.manifest)
    np.save(paths.frames, np.zeros_like(expected))
    paths.manifest.write_text(json.dumps({**manifest, "fingerprint": "0" * 64}))
    frames, _ = dvs.load_split(small_dataset, cache, "eval")
    assert conversions == ["eval", "eval", "eval"]
    np.testing.assert_array_equal(frames, expected)


@pytest.mark.parametrize("split", ["train", "eval"])
def test_process_shards_are_disjoint_and_cover_the_split(recordings, shared_cache, split):
    data_dir, _ = recordings
    assert_shards_partition_the_split(
        {"name": "cifar10_dvs", "data_dir": str(data_dir), "cache_dir": str(shared_cache), "augment": False},
        split, eval_batch_size=3, train_batch_size=2 if split == "train" else 5)

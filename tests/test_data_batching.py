"""Batching semantics of the host pipelines: one exact eval pass, a train stream whose
epoch(e) is reshuffled every pass in the order of (seed, e), disjoint shards per process
(glif_jax.data.batching)."""

import itertools

import numpy as np
import pytest

from glif_jax.data.batching import OrderedPass, ShuffledBatches, with_mask
from glif_jax.data.options import BatchRequest
from tests.data_reference import assert_batches_equal, reference_batches


def examples(count):
    """Image i holds the value i; label i is i (identifies the example)."""
    images = np.arange(count, dtype=np.float32).reshape(count, 1, 1, 1)
    return images, np.arange(count)


def identity(images):
    return np.asarray(images, np.float32)


def identity_train(images, rng):
    return identity(images)


def real_labels(batch):
    return batch["label"][batch["mask"] == 1].tolist()


def test_eval_pass_covers_every_example_once_across_shards():
    """One pass: every example exactly once over all shards, padded batches masked,
    the same number of batches on every shard."""
    images, labels = examples(23)
    seen, lengths = [], set()
    for shard in range(3):
        request = BatchRequest("eval", batch_size=4, seed=0, train=False, shard_index=shard, shard_count=3)
        batches = list(OrderedPass(images, labels, identity, request))
        lengths.add(len(batches))
        for batch in batches:
            assert batch["image"].shape == (4, 1, 1, 1) and batch["image"].dtype == np.float32
            assert batch["label"].dtype == np.int32 and batch["mask"].dtype == np.float32
            padding = batch["mask"] == 0
            assert (batch["image"][padding] == 0).all() and (batch["label"][padding] == 0).all()
            np.testing.assert_array_equal(batch["image"][~padding].ravel(), batch["label"][~padding])
            seen += real_labels(batch)
    assert sorted(seen) == list(range(23))
    assert lengths == {2}  # ceil(ceil(23 / 3) / 4)


def test_eval_pass_in_split_order_and_len():
    images, labels = examples(10)
    request = BatchRequest("eval", batch_size=4, seed=0, train=False)
    passed = OrderedPass(images, labels, identity, request)
    batches = list(passed)
    assert len(passed) == len(batches) == 3
    assert sum((real_labels(batch) for batch in batches), []) == list(range(10))
    np.testing.assert_array_equal(batches[-1]["mask"], [1, 1, 0, 0])


def test_eval_pass_drop_remainder_drops_the_partial_batch():
    images, labels = examples(10)
    request = BatchRequest("eval", batch_size=4, seed=0, train=False, drop_remainder=True)
    batches = list(OrderedPass(images, labels, identity, request))
    assert len(batches) == 2 and all(batch["mask"].all() for batch in batches)


def train_stream(shard, seed=0, count=20, shard_count=2, batch_size=3):
    images, labels = examples(count)
    request = BatchRequest("train", batch_size=batch_size, seed=seed, train=True,
                           shard_index=shard, shard_count=shard_count, drop_remainder=True)
    return ShuffledBatches(images, labels, identity_train, request)


def test_train_epoch_is_endless_and_reshuffled_each_pass():
    """Per pass: floor(floor(20/2)/3) = 3 batches per shard, no example twice; the order
    changes between passes and between epochs; an epoch goes on past any number of passes;
    iterating the stream is epoch 0."""
    stream = train_stream(0)
    assert stream.batches_per_epoch == 3
    for epoch in range(2):
        batches = list(itertools.islice(stream.epoch(epoch), 3 * 5))
        assert len(batches) == 15
        passes = [sum((real_labels(b) for b in batches[3 * p : 3 * p + 3]), []) for p in range(5)]
        for one_pass in passes:
            assert len(one_pass) == 9 and len(set(one_pass)) == 9
        assert len({tuple(one_pass) for one_pass in passes}) == 5
    first = [real_labels(b) for b in itertools.islice(stream.epoch(0), 3)]
    assert first != [real_labels(b) for b in itertools.islice(stream.epoch(1), 3)]
    assert first == [real_labels(b) for b in itertools.islice(stream, 3)]


def test_train_shards_are_disjoint_within_an_epoch():
    """Multi-host: in every pass of every epoch the shards' examples do not overlap."""
    for epoch in range(3):
        for one_pass in range(2):
            parts = []
            for shard in range(3):
                stream = train_stream(shard, shard_count=3)
                batches = itertools.islice(stream.epoch(epoch), one_pass * 2, (one_pass + 1) * 2)
                parts.append(set(sum((real_labels(b) for b in batches), [])))
            assert all(len(part) == 6 for part in parts)  # floor(floor(20/3)/3) * 3
            assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


@pytest.mark.parametrize("shard_index, shard_count", [(0, 1), (1, 3)])
def test_train_epoch_follows_the_reference_order(shard_index, shard_count):
    """epoch(e) is the order training runs have always used for epoch e (tests/data_reference.py),
    augmentation draws included, across pass boundaries, in any order of asking for epochs."""
    images, labels = examples(23)

    def noisy(raw, rng):
        return raw + rng.random(raw.shape).astype(np.float32)

    request = BatchRequest("train", batch_size=3, seed=11, train=True, shard_index=shard_index,
                           shard_count=shard_count, drop_remainder=True)
    stream = ShuffledBatches(images, labels, noisy, request)
    count = 2 * stream.batches_per_epoch + 1
    for epoch in (4, 0, 1, 4):
        expected = reference_batches(images, labels, 3, 11, epoch, count, noisy,
                                     shard_index=shard_index, shard_count=shard_count)
        assert_batches_equal(itertools.islice(stream.epoch(epoch), count), expected)


def test_train_stream_is_reproducible_from_the_seed():
    first = [b["label"] for b in itertools.islice(train_stream(1, seed=5).epoch(2), 7)]
    again = [b["label"] for b in itertools.islice(train_stream(1, seed=5).epoch(2), 7)]
    other = [b["label"] for b in itertools.islice(train_stream(1, seed=6).epoch(2), 7)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_train_stream_passes_the_generator_to_the_augmentation():
    """Augmentation randomness differs per batch and is reproducible."""
    images, labels = examples(8)
    request = BatchRequest("train", batch_size=4, seed=3, train=True, drop_remainder=True)

    def noisy(raw, rng):
        return raw + rng.random(raw.shape).astype(np.float32)

    first = [b["image"] for b in itertools.islice(ShuffledBatches(images, labels, noisy, request), 4)]
    again = [b["image"] for b in itertools.islice(ShuffledBatches(images, labels, noisy, request), 4)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    fractions = np.concatenate([a.ravel() % 1 for a in first])
    assert len(np.unique(fractions)) == fractions.size


def test_batch_larger_than_a_shard_is_an_early_error():
    with pytest.raises(ValueError, match="batch_size=11 is larger than the 10 examples"):
        train_stream(0, batch_size=11)


def test_with_mask_rejects_an_oversized_batch():
    with pytest.raises(ValueError, match="more than batch_size"):
        with_mask({"image": np.zeros((3, 1)), "label": np.zeros(3)}, 2)

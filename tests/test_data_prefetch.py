"""Background prefetching of host batches and transfers to the device
(glif_jax.data.prefetch)."""

import itertools
import threading

import numpy as np
import pytest

from glif_jax.data.prefetch import Prefetched, prefetch_to_device


def batches(count=None):
    for index in itertools.count() if count is None else range(count):
        yield {"image": np.full((2, 3), index, np.float32), "label": np.array([index, -index], np.int32)}


class Recorded:
    """Re-iterable source that counts what it produced and signals when it reached `ahead`."""

    def __init__(self, ahead):
        self.produced = 0
        self.reached = threading.Event()
        self.ahead = ahead

    def __iter__(self):
        for item in itertools.count():
            self.produced += 1
            if self.produced >= self.ahead:
                self.reached.set()
            yield item


def prefetch_threads():
    return [thread for thread in threading.enumerate() if thread.name == "glif_jax-prefetch"]


def test_prefetched_yields_exactly_the_source_sequence():
    plain = list(batches(7))
    ahead = list(Prefetched(list(batches(7)), 2))
    assert len(ahead) == 7
    for a, b in zip(plain, ahead):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    assert len(Prefetched(list(range(5)), 3)) == 5
    assert list(Prefetched(range(5), 1)) == list(range(5)) == list(Prefetched(range(5), 1))


class Failing:
    """Source that yields 1, 2, then raises."""

    def __iter__(self):
        yield 1
        yield 2
        raise KeyError("broken record")


def test_producer_exceptions_reach_the_consumer_in_place():
    received = []
    with pytest.raises(KeyError, match="broken record"):
        for item in Prefetched(Failing(), 4):
            received.append(item)
    assert received == [1, 2]


def test_items_are_produced_ahead_in_the_background():
    source = Recorded(ahead=4)
    iterator = iter(Prefetched(source, 3))
    assert next(iterator) == 0
    assert source.reached.wait(timeout=30)  # 1 consumed + 3 queued, without asking
    iterator.close()


def test_closing_the_consumer_stops_the_producer():
    source = Recorded(ahead=10**9)
    iterator = iter(Prefetched(source, 2))
    assert [next(iterator) for _ in range(3)] == [0, 1, 2]
    iterator.close()
    for thread in prefetch_threads():
        thread.join(timeout=30)
    assert not prefetch_threads()
    assert source.produced <= 3 + 2 + 1


class Epochs:
    """A train stream stand-in: epoch(e) counts 100 * e, 100 * e + 1, ... without end."""

    def __init__(self):
        self.asked = []

    def epoch(self, epoch):
        self.asked.append(epoch)
        return itertools.count(100 * epoch)


def test_a_train_streams_epochs_are_prefetched_and_closing_stops_the_producer():
    source = Epochs()
    prefetched = Prefetched(source, 2)
    assert list(itertools.islice(prefetched.epoch(3), 4)) == [300, 301, 302, 303]
    iterator = prefetched.epoch(1)
    assert next(iterator) == 100
    iterator.close()
    for thread in prefetch_threads():
        thread.join(timeout=30)
    assert not prefetch_threads()
    assert source.asked == [3, 1]


def test_bad_prefetch_size_is_rejected():
    with pytest.raises(ValueError, match="prefetch size must be an int >= 1"):
        Prefetched([], 0)
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        next(prefetch_to_device(batches(1), size=0))


def test_prefetch_to_device_transfers_the_same_values():
    import jax

    moved = list(prefetch_to_device(batches(5), size=2))
    assert len(moved) == 5
    for index, batch in enumerate(moved):
        assert isinstance(batch["image"], jax.Array)
        np.testing.assert_array_equal(np.asarray(batch["image"]), np.full((2, 3), index))
        np.testing.assert_array_equal(np.asarray(batch["label"]), [index, -index])


def test_prefetch_to_device_with_a_batch_sharding():
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    count = len(jax.devices())
    source = [{"image": np.arange(2 * count * 3, dtype=np.float32).reshape(2 * count, 3)}]
    (batch,) = prefetch_to_device(source, size=1, sharding=sharding)
    assert batch["image"].sharding == sharding
    np.testing.assert_array_equal(np.asarray(batch["image"]), source[0]["image"])

"""Keeping batches ready ahead of the consumer: a background thread on the host
(`Prefetched`), and asynchronous transfers to the accelerator (`prefetch_to_device`)."""

from __future__ import annotations

import collections
import itertools
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

_ITEM, _END, _ERROR = "item", "end", "error"


class Prefetched:
    """Iterable over the items of `source`, produced `size` items ahead by a daemon thread.

    Each `iter()` starts a new thread over a new `iter(source)`, so the items and their
    order are exactly those of `source`; `epoch(e)` of a train stream does the same over
    `source.epoch(e)`. An exception raised by the source is re-raised in the consumer at
    the position where it happened. Closing (or dropping) the consumer's iterator stops the
    thread.
    """

    def __init__(self, source: Iterable[Any], size: int):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"prefetch size must be an int >= 1, got {size!r}")
        self.source = source
        self.size = size

    def __len__(self) -> int:
        return len(self.source)  # TypeError for infinite sources, as for the source

    def __iter__(self) -> Iterator[Any]:
        return _prefetch(self.source, self.size)

    def epoch(self, epoch: int) -> Iterator[Any]:
        """The batches of training epoch ``epoch`` of a train stream, prefetched."""
        return _prefetch(self.source.epoch(epoch), self.size)


def _prefetch(source: Iterable[Any], size: int) -> Iterator[Any]:
    ready: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(message: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(message, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put((_ITEM, item)):
                    return
            put((_END, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer
            put((_ERROR, error))

    threading.Thread(target=produce, name="glif_jax-prefetch", daemon=True).start()
    try:
        while True:
            kind, value = ready.get()
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value
    finally:
        stop.set()


def prefetch_to_device(
    batches: Iterable[dict[str, Any]], size: int = 2, sharding: Any = None
) -> Iterator[dict[str, Any]]:
    """Yields the batches as jax.Arrays, with `size` transfers started ahead.

    Args:
      batches: host batches (dicts of NumPy arrays, this process's part).
      size: batches in flight (>= 1).
      sharding: None = `jax.device_put` onto the default device; otherwise a
        `jax.sharding.Sharding` of the GLOBAL batch, and each process's host batch is
        its local part (`jax.make_array_from_process_local_data`), as in multi-host runs.
    """
    import jax

    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an int >= 1, got {size!r}")

    def transfer(batch: dict[str, Any]) -> dict[str, Any]:
        if sharding is None:
            return jax.device_put(batch)
        return jax.tree.map(
            lambda array: jax.make_array_from_process_local_data(sharding, array), batch
        )

    iterator = iter(batches)
    in_flight: collections.deque = collections.deque()
    for batch in itertools.islice(iterator, size):
        in_flight.append(transfer(batch))
    while in_flight:
        yield in_flight.popleft()
        for batch in itertools.islice(iterator, 1):
            in_flight.append(transfer(batch))

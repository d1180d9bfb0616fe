"""Wall-clock timing shared by the benchmarks: interleaved repeats, min and median."""

from __future__ import annotations

import random
import statistics
import time
from typing import Callable, Hashable, Mapping


def interleaved(cases: Mapping[Hashable, Callable[[], object]], repeats: int) -> dict[Hashable, list[float]]:
    """Seconds per call of every case: ``repeats`` rounds of one call each, in turn.

    Running the cases round-robin (not each one ``repeats`` times in a row) spreads any change
    in the machine's load over all of them, so that their ratios stay fair; each round takes
    them in a new random order, so that no case always follows the same one (and finds the
    caches as that one left them). Each callable must block until its result is ready
    (``jax.block_until_ready`` or a synchronous framework).
    """
    seconds: dict[Hashable, list[float]] = {key: [] for key in cases}
    order = list(cases)
    shuffle = random.Random(0).shuffle
    for _ in range(repeats):
        shuffle(order)
        for key in order:
            start = time.perf_counter()
            cases[key]()
            seconds[key].append(time.perf_counter() - start)
    return seconds


def summary_ms(seconds: list[float]) -> tuple[float, float]:
    """``(min, median)`` in milliseconds."""
    return 1e3 * min(seconds), 1e3 * statistics.median(seconds)

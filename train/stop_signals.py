"""SIGTERM / SIGINT as a request to stop at the next step boundary (how clusters preempt).

While a :class:`StopSignals` context is active in the main thread, the first SIGTERM or
SIGINT only records the request; the training loop asks :meth:`StopSignals.requested`
after every step, saves a checkpoint and raises :class:`RunInterrupted`. A second signal
acts as it would without this context (SIGINT: ``KeyboardInterrupt``; SIGTERM: the
previous handler), so an impatient user can still stop at once.

With several processes, each of them must stop at the same step: there the request comes
from JAX's preemption sync point (``multihost_utils.reached_preemption_sync_point``), which
the coordination service triggers on every host when one of them is preempted.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import jax

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunInterrupted(Exception):
    """Training stopped on a signal after saving a checkpoint at ``step``."""

    def __init__(self, signal_number: int, step: int, checkpoint_dir: Any):
        self.signal_number = signal_number
        self.step = step
        name = signal.Signals(signal_number).name
        super().__init__(
            f"stopped by {name} at step {step}; a checkpoint of that step is in {checkpoint_dir}. "
            "Continue with the same command and --resume=auto (or --resume)"
        )

    @property
    def exit_status(self) -> int:
        """128 + the signal number, as a shell reports a process ended by that signal."""
        return 128 + self.signal_number


class StopSignals:
    """Records SIGTERM/SIGINT while active; a no-op outside the main thread."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        self._restore()

    def _restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.signal_number = number
        self._restore()   # a second signal acts as usual
        logger.warning("received %s: stopping after the current step with a checkpoint "
                       "(send it again to stop at once)", signal.Signals(number).name)

    def requested(self, step: int) -> bool:
        """Whether to stop after ``step``; the same answer on every process."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            try:
                reached = multihost_utils.reached_preemption_sync_point(step)
            except RuntimeError:   # no preemption service in this jax.distributed setup
                return False
            if reached:
                self.signal_number = self.signal_number or signal.SIGTERM
            return reached
        return self.signal_number is not None

"""Starting one process of a multi-process run: where the coordinator is, how many processes, which one.

Every process of a multi-host (or multi-process) run calls :func:`initialize` before
anything touches the devices; ``jax.distributed`` then connects it to the coordinator
(process 0's host) and ``jax.devices()`` lists the devices of all processes. The three
values come from, in this order:

1. the arguments (``glif-train --coordinator_address HOST:PORT --num_processes N --process_id I``);
2. the environment: ``JAX_COORDINATOR_ADDRESS`` (which JAX itself reads), ``JAX_NUM_PROCESSES``
   and ``JAX_PROCESS_ID`` (read here: JAX has no variables for them);
3. JAX's cluster auto-detection (SLURM, Open MPI, Kubernetes, Cloud TPU) for whatever is
   still unset.

An argument and an environment variable that disagree are refused, as are a process id
outside ``[0, num_processes)`` and an address without a port (:class:`LaunchError`).

On CPUs the processes exchange data with Gloo (JAX's default CPU collectives). When one
process dies, the others fail in their next collective ("connection closed by peer"), or
are stopped by the coordinator once the dead one misses its heartbeats for
``heartbeat_timeout_seconds``; :func:`peer_failure_message` words that error for the user.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Mapping

import jax

COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"

logger = logging.getLogger(__name__)


class LaunchError(ValueError):
    """Inconsistent or invalid multi-process settings, or ``jax.distributed`` failed to start."""


@dataclasses.dataclass(frozen=True)
class LaunchSettings:
    """What :func:`initialize` passes to ``jax.distributed.initialize`` (None: auto-detect).

    ``requested``: start ``jax.distributed`` at all (``--distributed``, or any value given).
    ``heartbeat_timeout_seconds``: how long the coordinator waits for a silent process before it
    stops the whole run (None: JAX's default, 100 s).
    """

    requested: bool = False
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    heartbeat_timeout_seconds: int | None = None


def launch_settings(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    heartbeat_timeout_seconds: int | None = None,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
) -> LaunchSettings:
    """The checked settings of this process from its arguments and ``environ`` (default
    ``os.environ``); raises :class:`LaunchError` naming the argument or variable at fault."""
    environ = os.environ if environ is None else environ
    address = _merged("--coordinator_address", coordinator_address, COORDINATOR_ENV, environ, str)
    count = _merged("--num_processes", num_processes, NUM_PROCESSES_ENV, environ, int)
    index = _merged("--process_id", process_id, PROCESS_ID_ENV, environ, int)
    if address is not None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise LaunchError(f"--coordinator_address (or {COORDINATOR_ENV}): expected HOST:PORT, got {address!r}")
    if count is not None and count < 1:
        raise LaunchError(f"--num_processes (or {NUM_PROCESSES_ENV}): expected an integer >= 1, got {count}")
    if index is not None and index < 0:
        raise LaunchError(f"--process_id (or {PROCESS_ID_ENV}): expected an integer >= 0, got {index}")
    if index is not None and count is not None and index >= count:
        raise LaunchError(f"--process_id={index} is not below --num_processes={count} (process ids are 0 .. "
                          f"{count - 1})")
    if heartbeat_timeout_seconds is not None and heartbeat_timeout_seconds < 1:
        raise LaunchError(f"--heartbeat_timeout_seconds: expected an integer >= 1, got {heartbeat_timeout_seconds}")
    return LaunchSettings(
        requested=force or any(value is not None for value in (address, count, index)),
        coordinator_address=address, num_processes=count, process_id=index,
        heartbeat_timeout_seconds=heartbeat_timeout_seconds,
    )


def _merged(flag: str, value, variable: str, environ: Mapping[str, str], kind: type):
    """``value`` or the environment's ``variable`` (parsed as ``kind``); both set must agree."""
    text = environ.get(variable) or None
    from_env = None
    if text is not None:
        try:
            from_env = kind(text.strip())
        except ValueError:
            raise LaunchError(f"{variable}={text!r}: expected an integer") from None
    if value is not None and from_env is not None and value != from_env:
        raise LaunchError(f"{flag}={value} disagrees with the environment's {variable}={text}; "
                          "give one of them (or the same value)")
    return value if value is not None else from_env


def initialize(settings: LaunchSettings) -> None:
    """Starts ``jax.distributed`` when ``settings.requested``; a single-process run is left untouched.

    Must run before anything else touches the devices. Raises :class:`LaunchError` when JAX
    cannot complete the settings (e.g. a process id without a coordinator, outside a cluster
    that JAX detects)."""
    if not settings.requested:
        return
    options = {} if settings.heartbeat_timeout_seconds is None else {
        "heartbeat_timeout_seconds": settings.heartbeat_timeout_seconds}
    try:
        jax.distributed.initialize(settings.coordinator_address, settings.num_processes, settings.process_id,
                                   **options)
    except (ValueError, TypeError) as error:
        raise LaunchError(
            f"cannot start jax.distributed: {error}. Outside a cluster that JAX detects (SLURM, Open MPI, "
            "Kubernetes, Cloud TPU) give all three of --coordinator_address, --num_processes and --process_id "
            f"(or {COORDINATOR_ENV}, {NUM_PROCESSES_ENV}, {PROCESS_ID_ENV})"
        ) from None
    logger.info("jax.distributed: process %d of %d, %d local / %d global devices", jax.process_index(),
                jax.process_count(), jax.local_device_count(), jax.device_count())


def is_peer_failure(error: BaseException) -> bool:
    """Whether ``error`` is a runtime error of a multi-process run (a collective or the coordinator
    failed): in practice another process of the run died."""
    return jax.process_count() > 1 and isinstance(error, jax.errors.JaxRuntimeError)


def peer_failure_message(error: BaseException) -> str:
    """One paragraph for the user about a failed collective (:func:`is_peer_failure`)."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"process {jax.process_index()} of {jax.process_count()} stops: an operation across the run's "
        f"processes failed, most likely because another process of this run died ({first_line}). "
        "See the other processes' logs; restart every process with --resume=auto to continue from the "
        "last complete checkpoint"
    )

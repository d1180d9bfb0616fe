"""Process settings that make training fast on a CPU; applied by ``glif-train`` and ``glif-eval``.

Nothing here runs on ``import glif_jax``: how a process allocates memory and compiles is the
program's decision, not a library's. The command-line tools call
:func:`configure_for_training` first thing, before NumPy or JAX is imported; a Python
training script can do the same as its first statement (this module imports only the
standard library).

Two settings, each measured on a train step of the paper's ResNet-18 (CIFAR, T = 4, batch 16)
on a 2-core x86 CPU (numbers in ``benchmarks/README.md``):

- **XLA:CPU libraries** (:data:`XLA_CPU_FLAGS`). Keep XLA's YNNPACK library for reductions
  (batch-norm statistics and their gradients: several times faster than XLA's own loops)
  but run convolutions on XLA's Eigen kernels. YNNPACK's convolution is as fast forward, but
  computes the weight gradient (a convolution whose window is the whole feature map) 2.6×
  slower. And XLA's memory-optimising scheduler: the same step time, 120 MiB (7 %) less
  peak memory than its default, concurrency-optimising one.
- **Huge pages for large buffers** (:data:`ALLOCATOR_TUNABLES`). glibc maps every buffer
  above its mmap threshold afresh and unmaps it when freed, so each train step page-faults
  all of its large activations in again, 4 KiB at a time (a fifth of the step here).
  ``glibc.malloc.hugetlb=1`` makes glibc ask for transparent huge pages on those mappings:
  512 times fewer faults, and freed memory still goes back to the system (keeping it
  instead, with ``mmap_max=0``, was as fast but let fragmentation grow the peak memory by up
  to 1.7 GiB). glibc reads it only at start-up, so the program starts itself once more with
  ``GLIBC_TUNABLES`` set.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

XLA_CPU_FLAGS: tuple[str, ...] = (
    "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_REDUCE",
    "--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
)
"""XLA flags for the CPU backend: YNNPACK for reductions only (convolutions on Eigen); the
memory-optimising instruction scheduler."""

ALLOCATOR_TUNABLES = "glibc.malloc.hugetlb=1"
"""glibc tunable: transparent huge pages for the buffers malloc maps (glibc >= 2.35)."""

_RESTARTED = "GLIF_JAX_ALLOCATOR_RESTART"   # marks the second start, so there is no third
_THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def configure_for_training(*, restart: bool = True) -> list[str]:
    """Apply :func:`use_huge_pages` and :func:`use_xla_cpu_flags`; returns what is in effect.

    Call before JAX starts a backend (first thing in a script). May restart the program
    (``os.execve`` with the same command line; it then does not return in the first process,
    and whatever ran before runs again): pass ``restart=False`` to skip the allocator setting
    instead. Interactive sessions (a REPL, IPython, Jupyter) are never restarted.
    """
    return (use_huge_pages() if restart and not _interactive() else []) + use_xla_cpu_flags()


def use_xla_cpu_flags(flags: tuple[str, ...] = XLA_CPU_FLAGS) -> list[str]:
    """Add ``flags`` to ``XLA_FLAGS``, except those whose name the user already set there.

    Returns the flags added. Too late once a JAX backend has started (XLA would ignore
    them): then nothing is added and the returned list says so.
    """
    current = os.environ.get("XLA_FLAGS", "")
    user_names = {token.split("=", 1)[0] for token in current.split()}
    added = [flag for flag in flags if flag.split("=", 1)[0] not in user_names]
    if not added:
        return []
    if _backend_started():
        return [f"not applied, JAX's backend had started: {' '.join(added)}"]
    os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added


def use_huge_pages() -> list[str]:
    """Start the program again with :data:`ALLOCATOR_TUNABLES` in ``GLIBC_TUNABLES``.

    Only on Linux with glibc >= 2.35 and transparent huge pages not disabled, only when the
    user's ``GLIBC_TUNABLES`` sets no malloc option (theirs wins), and only from a real
    program start (``sys.orig_argv``). Returns ``["GLIBC_TUNABLES=..."]`` in the restarted
    process, [] where nothing applies.
    """
    if os.environ.get(_RESTARTED) == ALLOCATOR_TUNABLES:
        return [f"GLIBC_TUNABLES={ALLOCATOR_TUNABLES}"]
    if not huge_pages_available() or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return []
    tunables = ":".join(filter(None, [os.environ.get("GLIBC_TUNABLES", ""), ALLOCATOR_TUNABLES]))
    environment = dict(os.environ, GLIBC_TUNABLES=tunables, **{_RESTARTED: ALLOCATOR_TUNABLES})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)
    return []   # not reached


def huge_pages_available() -> bool:
    """glibc >= 2.35 (the ``hugetlb`` tunable) and transparent huge pages not ``[never]``."""
    if platform.system() != "Linux":
        return False
    libc, version = platform.libc_ver()
    if libc != "glibc" or tuple(int(part) for part in version.split(".")[:2]) < (2, 35):
        return False
    try:
        return "[never]" not in _THP_SETTING.read_text()
    except OSError:
        return False


def _interactive() -> bool:
    return bool(sys.flags.interactive) or hasattr(sys, "ps1") or "IPython" in sys.modules


def _backend_started() -> bool:
    xla_bridge = sys.modules.get("jax._src.xla_bridge")   # never imports JAX itself
    return bool(getattr(xla_bridge, "_backends", None))

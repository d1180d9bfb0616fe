"""Optional dependencies: which ``pip install glif-jax[<extra>]`` brings what.

``pip install glif-jax`` installs the neuron, its surrogates and CPU kernel, the Flax layers,
the paper's models and optimiser (jax, flax, optax, numpy). Everything else is an extra,
named for what it enables:

==========  =====================================================================
extra       enables
==========  =====================================================================
train       glif-train / glif-eval / glif-plot, checkpoints (orbax), configs
            (ml_collections), TensorBoard logs, the default digits dataset
cifar       CIFAR-10/100 through TensorFlow Datasets
imagenet    ImageNet through TensorFlow Datasets (the same packages as cifar)
dvs         CIFAR10-DVS through tonic
plot        the glif-plot figures and tables (matplotlib, pandas)
all         every extra above
==========  =====================================================================

:func:`require` imports a module of an extra, or raises :class:`MissingExtraError` naming
the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Iterable

INSTALL = "pip install 'glif-jax[{extra}]'"


class MissingExtraError(ImportError):
    """A feature needs a package of an extra that is not installed."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Imports ``module``; if it is missing, raises ``MissingExtraError`` saying that
    ``feature`` needs the extra ``extra`` and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{feature} needs the package {module.split('.')[0]!r} ({error}), which comes with "
            f"glif-jax's [{extra}] extra: {INSTALL.format(extra=extra)}"
        ) from error


def check_installed(packages: Iterable[str], extra: str, feature: str) -> None:
    """Raises ``MissingExtraError`` if a top-level package is not installed, without importing
    any of them (cheap enough for a package's ``__init__``)."""
    missing = sorted(name for name in packages if not _installed(name))
    if missing:
        raise MissingExtraError(
            f"{feature} needs the packages {', '.join(missing)}, which come with glif-jax's "
            f"[{extra}] extra: {INSTALL.format(extra=extra)}"
        )


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):   # e.g. a parent that cannot be imported
        return False

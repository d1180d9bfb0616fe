"""Early, clear rejection of a bad training config (before any data or compile work).

``validate_config`` checks the keys the training loop itself reads (the config schema of
configs/base.py) and has each floor below read its own section once — ``config.dataset`` as
``glif_jax.data.DatasetOptions``, ``config.model`` as ``glif_jax.models.ModelOptions``,
``config.optim`` as ``glif_jax.optim.OptimizerOptions`` — re-raising their ``OptionError`` as
``ConfigError`` with the full config key. It returns those objects (``RunOptions``), which the
run is then built from. Unknown keys are already rejected by the locked ``ConfigDict`` itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Iterator

import jax

from glif_jax import data, models, optim, parallel
from glif_jax.errors import OptionError, check_choice, check_flag, check_integer

NONFINITE_ACTIONS = ("stop", "skip")


class ConfigError(ValueError):
    """A config value is missing, of the wrong type or out of range."""


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The config's sections as the floors below read and checked them, once per run, and the
    data-parallel strategy that ``config.parallel`` names."""

    dataset: data.DatasetOptions
    model: models.ModelOptions
    optimizer: optim.OptimizerOptions
    strategy: parallel.DataParallel


def validate_config(
    config: Any,
    *,
    device_count: int | None = None,
    process_count: int | None = None,
) -> RunOptions:
    """Raises ``ConfigError`` naming the key of the first invalid or missing value; returns
    the checked sections.

    ``device_count`` / ``process_count`` default to JAX's.
    """
    device_count = jax.device_count() if device_count is None else device_count
    process_count = jax.process_count() if process_count is None else process_count

    def checked(check: Callable[..., Any], key: str, *args: Any, **kwargs: Any) -> Any:
        return check(key, _get(config, key), *args, **kwargs)

    with _naming("config"):
        checked(check_integer, "seed", minimum=0)
        checked(check_integer, "num_epochs", minimum=1)
        batch_size = checked(check_integer, "batch_size", minimum=1)
        eval_batch_size = checked(check_integer, "eval_batch_size", minimum=1)
        for key in ("steps_per_epoch", "eval_steps"):
            checked(check_integer, key, minimum=1, optional=True)
        checked(check_integer, "log_every_steps", minimum=1)
        checked(check_flag, "half_precision")
        checked(check_flag, "spike_stats")
        strategy = parallel.make_strategy(_get(config, "parallel"))

        checked(check_integer, "checkpoint.every_epochs", minimum=1)
        checked(check_integer, "checkpoint.keep", minimum=1)
        checked(check_flag, "checkpoint.async_save")
        # absent from runs saved before they existed (then: no mid-epoch checkpoints, stop on non-finite)
        if "every_steps" in config.checkpoint:
            checked(check_integer, "checkpoint.every_steps", minimum=1, optional=True)
        if "nonfinite" in config:
            checked(check_choice, "nonfinite.action", NONFINITE_ACTIONS)
            checked(check_integer, "nonfinite.max_consecutive_skips", minimum=1)

    if strategy.name == "none" and process_count > 1:
        raise ConfigError(
            f"config.parallel='none' cannot run on {process_count} processes; use 'pmap' or 'mesh'"
        )
    shards = device_count if strategy.name != "none" else 1
    for key, size in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if size % shards:
            raise ConfigError(
                f"config.{key}={size} must be divisible by the {shards} devices of "
                f"config.parallel={strategy.name!r}"
            )

    with _naming("config.dataset"):
        dataset = data.DatasetOptions.from_config(_section(config, "dataset"))
        for split in ("train", "eval"):   # a run reads both
            dataset.check_split(split)
    with _naming("config.model"):
        model = models.ModelOptions.from_config(_section(config, "model"))
    with _naming("config.optim"):
        optimizer = optim.OptimizerOptions.from_config(_section(config, "optim"))
    return RunOptions(dataset=dataset, model=model, optimizer=optimizer, strategy=strategy)


@contextlib.contextmanager
def _naming(section: str) -> Iterator[None]:
    """Re-raises an ``OptionError`` inside ``section`` as ``ConfigError`` naming the full key."""
    try:
        yield
    except OptionError as error:
        raise ConfigError(str(error.within(section))) from None


def _get(config: Any, key: str) -> Any:
    value = config
    for part in key.split("."):
        try:
            value = value[part]
        except (KeyError, AttributeError, TypeError):
            raise ConfigError(f"config.{key} is missing") from None
    return value


def _section(config: Any, key: str) -> Any:
    """``config.<key>``, which must be a section (a ConfigDict or mapping)."""
    section = _get(config, key)
    if not hasattr(section, "get") or not hasattr(section, "keys"):
        raise ConfigError(f"config.{key}: expected a section of keys (a ConfigDict), got {section!r}")
    return section

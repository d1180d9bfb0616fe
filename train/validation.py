"""Early, clear rejection of a bad training config (before any data or compile work).

``validate_config`` checks the keys the training system reads (the config schema
of configs/base.py) and raises ``ConfigError`` naming the key, the value and what was
expected. Unknown keys are already rejected by the locked ``ConfigDict`` itself.
"""

from __future__ import annotations

from typing import Any, Iterable

import jax

from glif_jax import data, models, parallel
from glif_jax.neuron import GATE_MODES, KIND_PARAM_NAMES, NeuronConfig

NEURON_KINDS = tuple(KIND_PARAM_NAMES)
SCHEDULE_STEPS = ("epoch", "step")
NONFINITE_ACTIONS = ("stop", "skip")


class ConfigError(ValueError):
    """A config value is missing, of the wrong type or out of range."""


def _get(config: Any, key: str) -> Any:
    value = config
    for part in key.split("."):
        try:
            value = value[part]
        except (KeyError, AttributeError, TypeError):
            raise ConfigError(f"config.{key} is missing") from None
    return value


def _integer(config: Any, key: str, *, minimum: int, optional: bool = False) -> int | None:
    value = _get(config, key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = f"an integer >= {minimum}" + (" or None" if optional else "")
        raise ConfigError(f"config.{key} must be {expected}, got {value!r}")
    return value


def _boolean(config: Any, key: str) -> bool:
    value = _get(config, key)
    if not isinstance(value, bool):
        raise ConfigError(f"config.{key} must be True or False, got {value!r}")
    return value


def _choice(config: Any, key: str, choices: Iterable[str]) -> str:
    value = _get(config, key)
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"config.{key} must be one of {choices}, got {value!r}")
    return value


def _positive_number(config: Any, key: str, *, allow_zero: bool = True) -> float:
    value = _get(config, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not allow_zero):
        relation = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"config.{key} must be a number {relation}, got {value!r}")
    return float(value)


def model_names() -> tuple[str, ...]:
    """Names in the model registry (``glif_jax.models.list_models``)."""
    return tuple(models.list_models())


def dataset_names() -> tuple[str, ...]:
    """Names the data floor can build (``glif_jax.data.DATASET_NAMES``)."""
    return tuple(data.DATASET_NAMES)


def _validate_model_options(config: Any) -> None:
    """``config.model.neuron`` must make a NeuronConfig and ``config.model.kwargs`` fit the model."""
    neuron = _get(config, "model.neuron")
    try:
        NeuronConfig(**(neuron.to_dict() if hasattr(neuron, "to_dict") else dict(neuron)))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"config.model.neuron is invalid: {error}") from None
    kwargs = _get(config, "model.kwargs")
    try:
        models.get_spec(_get(config, "model.name"), **(kwargs.to_dict() if hasattr(kwargs, "to_dict") else dict(kwargs)))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"config.model.kwargs is invalid: {error}") from None


def validate_config(
    config: Any,
    *,
    device_count: int | None = None,
    process_count: int | None = None,
) -> None:
    """Raises ``ConfigError`` for the first invalid value; returns None when all are valid.

    ``device_count`` / ``process_count`` default to JAX's. Model and dataset names are
    checked against the registries (``glif_jax.models``, ``glif_jax.data``).
    """
    device_count = jax.device_count() if device_count is None else device_count
    process_count = jax.process_count() if process_count is None else process_count

    _integer(config, "seed", minimum=0)
    _integer(config, "num_epochs", minimum=1)
    batch_size = _integer(config, "batch_size", minimum=1)
    eval_batch_size = _integer(config, "eval_batch_size", minimum=1)
    _integer(config, "steps_per_epoch", minimum=1, optional=True)
    _integer(config, "eval_steps", minimum=1, optional=True)
    _integer(config, "log_every_steps", minimum=1)
    _boolean(config, "half_precision")
    _boolean(config, "spike_stats")

    strategy = _choice(config, "parallel", parallel.STRATEGY_NAMES)
    if strategy == "none" and process_count > 1:
        raise ConfigError(
            f"config.parallel='none' cannot run on {process_count} processes; use 'pmap' or 'mesh'"
        )
    shards = device_count if strategy != "none" else 1
    for key, size in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if size % shards:
            raise ConfigError(
                f"config.{key}={size} must be divisible by the {shards} devices of "
                f"config.parallel={strategy!r}"
            )

    _integer(config, "checkpoint.every_epochs", minimum=1)
    _integer(config, "checkpoint.keep", minimum=1)
    _boolean(config, "checkpoint.async_save")
    # absent from runs saved before they existed (then: no mid-epoch checkpoints, stop on non-finite)
    if "every_steps" in config.checkpoint:
        _integer(config, "checkpoint.every_steps", minimum=1, optional=True)
    if "nonfinite" in config:
        _choice(config, "nonfinite.action", NONFINITE_ACTIONS)
        _integer(config, "nonfinite.max_consecutive_skips", minimum=1)

    if _choice(config, "dataset.name", dataset_names()) == "npz":
        for key in ("dataset.train_path", "dataset.eval_path", "dataset.normalization"):
            if not _get(config, key):
                raise ConfigError(
                    f"config.{key} is required for the 'npz' dataset (e.g. --config.{key}="
                    + ("cifar10" if key.endswith("normalization") else "/path/to/file.npz") + ")"
                )
    _choice(config, "model.name", model_names())
    _integer(config, "model.time_steps", minimum=1)
    _boolean(config, "model.channel_wise")
    if "remat" in config.model:   # absent from runs saved before it existed (then off)
        _boolean(config, "model.remat")
    _choice(config, "model.neuron.kind", NEURON_KINDS)
    _choice(config, "model.neuron.gates", GATE_MODES)
    _validate_model_options(config)

    _positive_number(config, "optim.base_lr")
    momentum = _positive_number(config, "optim.momentum")
    if momentum >= 1:
        raise ConfigError(f"config.optim.momentum must be in [0, 1), got {momentum}")
    _positive_number(config, "optim.weight_decay")
    _positive_number(config, "optim.gate_lr_scale")
    _positive_number(config, "optim.primitive_lr_scale")
    period = _get(config, "optim.cosine_period_epochs")
    if period is not None:
        _positive_number(config, "optim.cosine_period_epochs", allow_zero=False)
    _choice(config, "optim.step_schedule_per", SCHEDULE_STEPS)

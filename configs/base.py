"""The paper's training recipes as locked `ml_collections.ConfigDict`s.

Every experiment file in `configs/` calls one builder here, so each recipe is written
once. Units: `base_lr` is the
learning rate per optimiser step at epoch 0; `batch_size` is the GLOBAL batch (batch per
device x devices); `num_epochs` and `cosine_period_epochs` are in epochs.
The returned config is locked: overriding a key that does not exist is an error.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import ml_collections
from ml_collections import config_dict

from glif_jax import models
from glif_jax.neurons import NeuronConfig
from glif_jax.neurons import registry as neurons
from glif_jax.errors import check_choice

# The paper's training recipe table. batch = batch per GPU x GPUs of the paper's runs.
CIFAR_RECIPE = dict(base_lr=0.1, num_epochs=200, batch_size=64 * 1, weight_decay=5e-5,
                    gate_lr_scale=0.1, cosine_period_epochs=None)
IMAGENET_RECIPE = dict(base_lr=0.1, num_epochs=150, batch_size=50 * 4, weight_decay=5e-5,
                       gate_lr_scale=1.0, cosine_period_epochs=None)
DVS_RECIPE = dict(base_lr=0.01, num_epochs=200, batch_size=32 * 1, weight_decay=0.0,
                  gate_lr_scale=1.0, cosine_period_epochs=64)

CIFAR_DATASETS = ("cifar10", "cifar100")


def neuron(**overrides: Any) -> ml_collections.ConfigDict:
    """`config.model.neuron`: every field of `glif_jax.neurons.NeuronConfig` with its default (the
    paper's GLIF: soft learnable gates, rectangular surrogate), and `options`: each registered
    neuron's options under its name (and `kind`'s, when it names another neuron), with their
    defaults, so that each can be set on the command line, e.g. `--config.model.neuron.kind=plif
    --config.model.neuron.options.plif.decay_input=False`. Only `kind`'s options are used; those
    of other neurons must keep their defaults (checked when the config is read)."""
    options = dict(overrides.pop("options", None) or {})
    hints = typing.get_type_hints(NeuronConfig)
    defaults = {}
    for field in dataclasses.fields(NeuronConfig):
        if field.name == "options" or not field.init:
            continue
        if field.default is None:   # a typed placeholder: the first type of its annotation but None
            types = [arg for arg in typing.get_args(hints[field.name]) if arg is not type(None)]
            defaults[field.name] = config_dict.placeholder(types[0])
        else:
            defaults[field.name] = field.default
    section = _with_overrides(defaults, overrides, "neuron overrides: unknown fields")
    chosen = neurons.get(section.kind)
    unknown = sorted(set(options) - set(chosen.default_options))
    if unknown:
        raise ValueError(f"neuron overrides: neuron {chosen.name!r} has no options {unknown}; "
                         f"its options: {sorted(chosen.default_options)}")
    namespaces = neurons.option_defaults()
    if chosen.default_options:
        namespaces[chosen.name] = {**chosen.default_options, **options}
    section.options = ml_collections.ConfigDict(namespaces)
    return section


def model_kwargs(model: str, **overrides: Any) -> ml_collections.ConfigDict:
    """`config.model.kwargs`: every option of `model` (`glif_jax.models.model_options`) with its
    default, so that each can be overridden (and type-checked) on the command line, e.g.
    `--config.model.kwargs.width_multiplier=0.25`; `overrides` replace some defaults."""
    return _with_overrides(models.model_options(model), overrides,
                           f"model overrides: model {model!r} has no options")


def _with_overrides(defaults: dict[str, Any], overrides: dict[str, Any], unknown_message: str
                    ) -> ml_collections.ConfigDict:
    """`defaults` with some values replaced; a name not among the defaults is an error."""
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise ValueError(f"{unknown_message} {sorted(unknown)}; expected some of {sorted(defaults)}")
    return ml_collections.ConfigDict({**defaults, **overrides})


def experiment(
    *,
    dataset: str,
    model: str,
    time_steps: int,
    init: str,
    base_lr: float,
    num_epochs: int,
    batch_size: int,
    weight_decay: float,
    gate_lr_scale: float,
    cosine_period_epochs: int | None,
    eval_batch_size: int,
    augment: bool,
    log_every_steps: int,
    step_schedule_per: str = "epoch",
    parallel: str = "none",
    channel_wise: bool = True,
    neuron_overrides: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
) -> ml_collections.ConfigDict:
    """A full, UNLOCKED config of the schema; the public builders below lock it."""
    if time_steps < 1:
        raise ValueError(f"time_steps must be >= 1, got {time_steps}")
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.num_epochs = num_epochs
    config.batch_size = batch_size
    config.eval_batch_size = eval_batch_size
    config.steps_per_epoch = config_dict.placeholder(int)  # None: dataset size // batch_size
    config.eval_steps = config_dict.placeholder(int)  # None: the whole eval split

    config.dataset = ml_collections.ConfigDict(dict(
        name=dataset,
        data_dir=config_dict.placeholder(str),
        train_path=config_dict.placeholder(str),  # "npz" only
        eval_path=config_dict.placeholder(str),  # "npz" only
        normalization=config_dict.placeholder(str),  # "npz" only
        augment=augment,
        cache_dir=config_dict.placeholder(str),  # CIFAR10-DVS frame cache
        prefetch=2,
    ))

    config.model = ml_collections.ConfigDict(dict(
        name=model,
        time_steps=time_steps,
        channel_wise=channel_wise,
        init=init,
        remat=True,   # recompute tdBN and GLIF in the backward pass: same numbers, 40 % less memory
        neuron=neuron(**(neuron_overrides or {})),
        kwargs=model_kwargs(model, **(model_overrides or {})),
    ))

    config.optim = ml_collections.ConfigDict(dict(
        base_lr=base_lr,
        momentum=0.9,
        weight_decay=weight_decay,
        gate_lr_scale=gate_lr_scale,
        primitive_lr_scale=1.0,
        cosine_period_epochs=(config_dict.placeholder(int) if cosine_period_epochs is None
                              else cosine_period_epochs),
        step_schedule_per=step_schedule_per,
        nesterov=False,
    ))

    config.half_precision = False
    config.parallel = parallel
    config.checkpoint = ml_collections.ConfigDict({
        "every_epochs": 1,
        "every_steps": config_dict.placeholder(int),   # also mid-epoch, every N steps (None: off)
        "keep": 3,                                     # the newest N, plus the best
        "async_save": True,
    })
    # a step with a non-finite loss or gradient: "stop" the run, or "skip" the update
    config.nonfinite = ml_collections.ConfigDict({"action": "stop", "max_consecutive_skips": 10})
    config.log_every_steps = log_every_steps
    config.spike_stats = False
    return config


def cifar(
    model: str,
    dataset: str,
    time_steps: int,
    *,
    channel_wise: bool = True,
    neuron_overrides: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
) -> ml_collections.ConfigDict:
    """CIFAR-10/100 recipe: lr 0.1, 200 epochs, batch 64, wd 5e-5, gates at lr/10 (the paper's training recipe)."""
    check_choice("dataset", dataset, CIFAR_DATASETS)
    config = experiment(
        dataset=dataset, model=model, time_steps=time_steps, init="cifar", **CIFAR_RECIPE,
        eval_batch_size=400, augment=True, log_every_steps=100,
        channel_wise=channel_wise, neuron_overrides=neuron_overrides, model_overrides=model_overrides,
    )
    config.lock()
    return config


def cifar_npz(
    model: str, time_steps: int, *, num_epochs: int, train_path: str | None = None,
    eval_path: str | None = None, model_overrides: dict[str, Any] | None = None,
    neuron_overrides: dict[str, Any] | None = None,
) -> ml_collections.ConfigDict:
    """The CIFAR-10 recipe on local `.npz` files (dataset "npz", CIFAR-10 normalisation).

    Without `train_path` / `eval_path`, the command line must give them
    (`--config.dataset.train_path=... --config.dataset.eval_path=...`)."""
    config = cifar(model, "cifar10", time_steps, model_overrides=model_overrides, neuron_overrides=neuron_overrides)
    config.dataset.name = "npz"
    config.dataset.train_path = train_path
    config.dataset.eval_path = eval_path
    config.dataset.normalization = "cifar10"
    config.num_epochs = num_epochs
    return config


def imagenet(model: str, time_steps: int) -> ml_collections.ConfigDict:
    """ImageNet recipe: lr 0.1, 150 epochs, global batch 200 (50 x 4 GPUs), wd 5e-5 (the paper's training recipe).

    The GLIF layers start as the paper's ImageNet runs do: preset "imagenet" (cond 0.5), and
    "imagenet_t6" (cond 0.9) at T = 6 (`glif_jax.layers.PRESETS`).
    Data-parallel over all local devices ("mesh"); the global batch must divide by their count.
    """
    init = "imagenet_t6" if time_steps == 6 else "imagenet"
    config = experiment(
        dataset="imagenet2012", model=model, time_steps=time_steps, init=init,
        **IMAGENET_RECIPE, eval_batch_size=200, augment=True, log_every_steps=500,
        parallel="mesh",
    )
    config.lock()
    return config


def dvs(model: str, time_steps: int) -> ml_collections.ConfigDict:
    """CIFAR10-DVS recipe: lr 0.01, 200 epochs, batch 32, no weight decay, cosine period 64."""
    config = experiment(
        dataset="cifar10_dvs", model=model, time_steps=time_steps, init="dvs", **DVS_RECIPE,
        eval_batch_size=200, augment=True, log_every_steps=50,
    )
    config.lock()
    return config


def digits(model: str, time_steps: int) -> ml_collections.ConfigDict:
    """scikit-learn's digits (shipped with the package): a few CPU minutes, offline.

    SGD as in the paper (momentum 0.9, wd 5e-5, per-group cosine), stepped every iteration.
    lr 1.0 (tuned: 0.1 stalls near 85 %), batch 64, 15 epochs: about 97 % test top-1 in well under a minute.
    """
    config = experiment(
        dataset="digits", model=model, time_steps=time_steps, init="cifar",
        base_lr=1.0, num_epochs=15, batch_size=64, weight_decay=5e-5, gate_lr_scale=1.0,
        cosine_period_epochs=None, eval_batch_size=128, augment=False, log_every_steps=10,
        step_schedule_per="step",
    )
    config.lock()
    return config

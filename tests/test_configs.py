"""Tests of configs/: schema, the paper's recipes and the experiment grid."""

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from glif_jax.configs import base
from glif_jax import models, optim
from glif_jax.neuron import NeuronConfig, neuron_scopes

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"

# The experiment grid of the issue, written out here independently of the files.
CIFAR_RUNS = [f"{d}_{m}_t{t}" for d in ("cifar10", "cifar100")
              for m in ("cifarnet", "resnet18", "resnet19") for t in (2, 4, 6)]
IMAGENET_RUNS = [f"imagenet_{m}_t{t}" for m in ("resnet34", "ms_resnet18") for t in (4, 6)]
DVS_RUNS = ["dvs_wide7b_t16"]
ABLATIONS = {  # suffix -> the only settings that differ from cifar10_resnet18_t4
    "glif_f": {"model.neuron.kind": "glif_f"},
    "hard_gates": {"model.neuron.gates": "hard"},
    "static_gates": {"model.neuron.static_gates": True},
    "static_primitives": {"model.neuron.static_primitives": True},
    "layer_wise": {"model.channel_wise": False},
    "lif": {"model.neuron.kind": "lif"},
}
ABLATION_RUNS = [f"cifar10_resnet18_t4_{a}" for a in ABLATIONS]
OTHER_RUNS = ["default", "cifar10_npz_resnet18_t4"]
ALL_RUNS = CIFAR_RUNS + IMAGENET_RUNS + DVS_RUNS + ABLATION_RUNS + OTHER_RUNS

# The paper's training recipe table; batch = batch per GPU x GPUs. ImageNet at T = 6 starts cond
# at 0.9 instead of 0.5: GLIF preset "imagenet_t6" (IMAGENET_T6_INIT).
IMAGENET_T6_INIT = "imagenet_t6"
PAPER_RECIPES = {
    "cifar": dict(base_lr=0.1, num_epochs=200, batch_size=64, weight_decay=5e-5,
                  gate_lr_scale=0.1, cosine_period_epochs=None, init="cifar"),
    "imagenet": dict(base_lr=0.1, num_epochs=150, batch_size=200, weight_decay=5e-5,
                     gate_lr_scale=1.0, cosine_period_epochs=None, init="imagenet"),
    "dvs": dict(base_lr=0.01, num_epochs=200, batch_size=32, weight_decay=0.0,
                gate_lr_scale=1.0, cosine_period_epochs=64, init="dvs"),
}

# The config schema, leaf keys by section.
SCHEMA = {
    "": {"seed", "num_epochs", "batch_size", "eval_batch_size", "steps_per_epoch", "eval_steps",
         "dataset", "model", "optim", "half_precision", "parallel", "checkpoint",
         "log_every_steps", "spike_stats", "nonfinite"},
    "dataset": {"name", "data_dir", "train_path", "eval_path", "normalization", "augment",
                "cache_dir", "prefetch"},
    "model": {"name", "time_steps", "channel_wise", "init", "remat", "neuron", "kwargs"},
    # every field of NeuronConfig (implementation, unroll, state_dtype too), and options: every
    # built-in neuron's options, so that each can be set on the command line
    "model.neuron": {"kind", "gates", "static_gates", "static_primitives", "surrogate",
                     "surrogate_width", "state_dtype", "implementation", "unroll", "options"},
    "model.neuron.options": {"plif"},   # each registered neuron with options, under its name
    "model.neuron.options.plif": {"decay_input", "v_threshold", "v_reset", "soft_reset", "detach_reset"},
    "optim": {"base_lr", "momentum", "weight_decay", "gate_lr_scale", "primitive_lr_scale",
              "cosine_period_epochs", "step_schedule_per", "nesterov"},
    "checkpoint": {"every_epochs", "every_steps", "keep", "async_save"},
    "nonfinite": {"action", "max_consecutive_skips"},
}
PAPER_NEURON = dict(kind="glif", gates="soft", static_gates=False, static_primitives=False,
                    surrogate="rectangular", surrogate_width=None, state_dtype=None, implementation="auto",
                    unroll=None)
# PLIF's options at spikingjelly's ParametricLIFNode defaults
BUILT_IN_OPTIONS = {"plif": dict(decay_input=True, v_threshold=1.0, v_reset=0.0, soft_reset=False, detach_reset=False)}
# config.model.kwargs: every option of the model with its default (the paper's architectures: the paper's widths;
# wide7b's width changes by 3x3 convs and ADD connections), written out independently.
MODEL_KWARGS = {"width_multiplier": 1.0}
WIDE7B_KWARGS = {"width_multiplier": 1.0, "width_change": "3x3", "connection": "ADD"}
NARROW_KWARGS = {"width_multiplier": 0.25}  # the CPU-sized npz run


def load(name: str, *overrides: str):
    """Load configs/<name>.py the way the CLI does (absl flags + config_flags, locked)."""
    argv = ["glif-train", f"--config={CONFIGS / f'{name}.py'}", *overrides]
    flag_values = flags.FlagValues()
    holder = config_flags.DEFINE_config_file("config", None, flag_values=flag_values,
                                             sys_argv=argv)
    flag_values(argv)
    return holder.value


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def section(config, path: str):
    for key in filter(None, path.split(".")):
        config = config[key]
    return config


def test_collection_is_exactly_the_experiment_grid():
    """The paper's training recipe and reported results: 3 models x 2 CIFARs x 3 T, 2 x 2 ImageNet, DVS, ablations, default, npz."""
    files = {p.stem for p in CONFIGS.glob("*.py")} - {"__init__", "base"}
    assert files == set(ALL_RUNS)
    assert len(CIFAR_RUNS) == 18 and len(IMAGENET_RUNS) == 4


@pytest.mark.parametrize("name", ALL_RUNS)
def test_every_config_loads_with_the_schema(name):
    """Loads through config_flags; exactly the keys of the schema; locked."""
    config = load(name)
    for path, keys in SCHEMA.items():
        assert set(section(config, path).keys()) == keys, (name, path)
    expected_kwargs = {"dvs_wide7b_t16": WIDE7B_KWARGS, "cifar10_npz_resnet18_t4": NARROW_KWARGS}
    assert dict(config.model.kwargs) == expected_kwargs.get(name, MODEL_KWARGS)
    models.get_spec(config.model.name, **config.model.kwargs)  # valid options of the model
    assert config.parallel in ("none", "pmap", "mesh")
    assert config.optim.step_schedule_per in ("epoch", "step")
    assert config.model.init in ("cifar", "imagenet", IMAGENET_T6_INIT, "dvs")
    assert config.model.remat is True   # glif-train recomputes tdBN and GLIF in the backward pass
    assert config.is_locked
    neuron = models.ModelOptions.from_config(config.model).neuron   # the neuron block reads as a NeuronConfig
    assert isinstance(neuron, NeuronConfig) and neuron.options == {}
    with pytest.raises(AttributeError):
        config.optim.no_such_field = 1


@pytest.mark.parametrize("name", CIFAR_RUNS + IMAGENET_RUNS + DVS_RUNS)
def test_paper_recipe_values(name):
    """The paper's training recipe per family: lr, epochs, global batch, wd, gate lr scale, cosine period, init."""
    config = load(name)
    family = name.split("_")[0]
    family = "cifar" if family.startswith("cifar") else family
    dataset, *model, steps = name.split("_")
    expected = PAPER_RECIPES[family]
    assert config.dataset.name == {"imagenet": "imagenet2012", "dvs": "cifar10_dvs"}.get(
        dataset, dataset)
    assert config.model.name == "_".join(model)
    assert config.model.time_steps == int(steps[1:])
    imagenet_t6 = name.startswith("imagenet") and steps == "t6"
    assert config.model.init == (IMAGENET_T6_INIT if imagenet_t6 else expected["init"])
    assert config.model.channel_wise is True
    assert {key: value for key, value in config.model.neuron.items() if key != "options"} == PAPER_NEURON
    assert config.model.neuron.options.to_dict() == BUILT_IN_OPTIONS
    assert config.num_epochs == expected["num_epochs"]
    assert config.batch_size == expected["batch_size"]
    assert config.steps_per_epoch is None and config.eval_steps is None
    assert config.dataset.augment is True
    optim_config = config.optim
    assert optim_config.base_lr == pytest.approx(expected["base_lr"])
    assert optim_config.weight_decay == pytest.approx(expected["weight_decay"])
    assert optim_config.gate_lr_scale == pytest.approx(expected["gate_lr_scale"])
    assert optim_config.cosine_period_epochs == expected["cosine_period_epochs"]
    assert optim_config.momentum == pytest.approx(0.9)
    assert optim_config.primitive_lr_scale == pytest.approx(1.0)
    assert optim_config.nesterov is False
    assert optim_config.step_schedule_per == "epoch"  # the authors' stepping


@pytest.mark.parametrize("suffix", ABLATIONS)
def test_ablations_differ_from_the_base_run_only_where_named(suffix):
    """The GLIF paper's neuron equations ablations on CIFAR-10 ResNet-18 T=4: one switch each, the rest identical."""
    reference = flatten(load("cifar10_resnet18_t4").to_dict())
    ablation = flatten(load(f"cifar10_resnet18_t4_{suffix}").to_dict())
    assert set(ablation) == set(reference)
    differences = {k: ablation[k] for k in reference if ablation[k] != reference[k]}
    assert differences == ABLATIONS[suffix]


def test_default_config_trains_offline_on_digits():
    config = load("default")
    assert config.dataset.name == "digits"
    assert config.model.name == "tiny_convnet"
    assert config.model.time_steps == 4
    assert config.dataset.data_dir is None
    assert 1 <= config.num_epochs <= 30
    assert config.batch_size <= 128


def test_npz_config_takes_its_files_from_the_command_line():
    """A CPU-sized run: quarter-width ResNet-18, T = 4, batch 64, 20 epochs, the CIFAR recipe
    otherwise. It names no data path of its own: without the two files, validation says which
    keys to give."""
    from glif_jax.train.validation import ConfigError, validate_config

    config = load("cifar10_npz_resnet18_t4")
    assert (config.model.name, config.model.time_steps, config.batch_size, config.num_epochs) == (
        "resnet18", 4, 64, 20)
    assert dict(config.model.kwargs) == NARROW_KWARGS
    assert config.dataset.name == "npz"
    assert config.dataset.normalization == "cifar10"
    assert config.dataset.train_path is None and config.dataset.eval_path is None
    assert config.optim.base_lr == pytest.approx(0.1)
    with pytest.raises(ConfigError, match=r"config.dataset.train_path: required for the 'npz' dataset"):
        validate_config(config, device_count=1, process_count=1)
    moved = load("cifar10_npz_resnet18_t4", "--config.dataset.train_path=/data/train.npz",
                 "--config.dataset.eval_path=/data/test.npz")
    assert (moved.dataset.train_path, moved.dataset.eval_path) == ("/data/train.npz",
                                                                 "/data/test.npz")
    validate_config(moved, device_count=1, process_count=1)


def test_command_line_overrides_existing_keys_including_empty_ones():
    config = load(
        "cifar10_resnet18_t4", "--config.optim.base_lr=0.05", "--config.steps_per_epoch=5",
        "--config.dataset.data_dir=/tmp/tfds", "--config.optim.cosine_period_epochs=10",
        "--config.model.neuron.surrogate_width=0.5", "--config.model.neuron.gates=hard",
        "--config.model.channel_wise=false",
    )
    assert config.optim.base_lr == pytest.approx(0.05)
    assert config.steps_per_epoch == 5
    assert config.dataset.data_dir == "/tmp/tfds"
    assert config.optim.cosine_period_epochs == 10
    assert config.model.neuron.surrogate_width == pytest.approx(0.5)
    assert config.model.neuron.gates == "hard"
    assert config.model.channel_wise is False


@pytest.mark.parametrize(
    "override",
    ["--config.optim.no_such_field=1", "--config.no_such_section.x=1",
     "--config.optim.base_lr=fast", "--config.num_epochs=1.5"],
)
def test_unknown_keys_and_wrong_types_are_rejected(override):
    with pytest.raises((AttributeError, KeyError, flags.IllegalFlagValueError)):
        load("cifar10_resnet18_t4", override)


def test_model_options_are_overridable_and_checked_on_the_command_line():
    """--config.model.kwargs.<option> sets a model option (and reaches the model); an option the
    model does not have, or a value of the wrong type, is rejected."""
    config = load("cifar10_resnet18_t4", "--config.model.kwargs.width_multiplier=0.5")
    assert config.model.kwargs.width_multiplier == pytest.approx(0.5)
    model = models.ModelOptions.from_config(config.model).build(10)
    assert model.spec == models.get_spec("resnet18", width_multiplier=0.5)
    assert model.spec.stem.features == 32
    assert load("cifar10_resnet18_t4", "--config.model.kwargs.width_multiplier=1").model.kwargs.width_multiplier == 1.0
    dvs = load("dvs_wide7b_t16", "--config.model.kwargs.width_change=1x1",
               "--config.model.kwargs.connection=IAND")
    assert dict(dvs.model.kwargs) == {"width_multiplier": 1.0, "width_change": "1x1", "connection": "IAND"}
    for name, override in (("cifar10_resnet18_t4", "--config.model.kwargs.width_change=1x1"),
                           ("cifar10_resnet18_t4", "--config.model.kwargs.width_multiplier=narrow"),
                           ("dvs_wide7b_t16", "--config.model.kwargs.depth=3")):
        with pytest.raises((AttributeError, KeyError, flags.IllegalFlagValueError)):
            load(name, override)


def test_checkpoint_async_save_can_be_overridden():
    config = load("cifar10_resnet18_t4", "--config.checkpoint.async_save=false")
    assert config.checkpoint.async_save is False


def test_builders_reject_bad_arguments():
    with pytest.raises(ValueError, match="dataset"):
        base.cifar("resnet18", "imagenet2012", 4)
    with pytest.raises(ValueError, match="time_steps"):
        base.cifar("resnet18", "cifar10", 0)
    with pytest.raises(ValueError, match="neuron"):
        base.cifar("resnet18", "cifar10", 4, neuron_overrides={"kindd": "lif"})
    with pytest.raises(ValueError, match=r"'resnet18' has no options \['width_change'\]"):
        base.cifar("resnet18", "cifar10", 4, model_overrides={"width_change": "1x1"})


@pytest.mark.parametrize("name, cond", [("imagenet_ms_resnet18_t6", 0.9), ("imagenet_resnet34_t6", 0.9),
                                        ("imagenet_ms_resnet18_t4", 0.5)])
def test_imagenet_configs_start_cond_as_the_paper(name, cond):
    """The ImageNet recipe's GLIF layers start at cond 0.9 with T = 6 and 0.5 with T = 4: every
    GLIF layer of the configured model holds exactly the float32 logit of that value."""
    config = load(name, "--config.model.kwargs.width_multiplier=0.0625")   # same GLIF layers, narrow
    model = models.ModelOptions.from_config(config.model).build(10)
    x = jnp.zeros((1, 32, 32, 3))
    params = jax.jit(lambda key: model.init(key, x, train=False))(jax.random.key(0))["params"]
    conds = [layer["cond"] for layer in neuron_scopes(params).values()]
    assert len(conds) > 10
    for value in conds:
        assert value.shape[0] == config.model.time_steps
        np.testing.assert_array_equal(value, np.float32(math.log(cond / (1 - cond))))


@pytest.mark.parametrize(
    "name, group, epoch, factor",
    [
        ("cifar10_resnet18_t4", "gates", 0, 0.1),  # gates at lr / 10 on CIFAR
        ("cifar10_resnet18_t4", "weights", 100, 0.5),  # half way through 200 epochs
        ("imagenet_ms_resnet18_t6", "gates", 0, 1.0),
        ("imagenet_ms_resnet18_t6", "primitives", 150, 0.0),
        ("dvs_wide7b_t16", "weights", 64, 0.0),  # T_max = 64 epochs ...
        ("dvs_wide7b_t16", "gates", 128, 1.0),  # ... and back up at 128 (the paper's training recipe)
    ],
)
def test_configs_drive_the_optimiser_schedules(name, group, epoch, factor):
    """The recipe reaches glif_jax.optim: group lr at an epoch = base_lr * factor."""
    config = load(name)
    steps_per_epoch = 7
    rates = optim.learning_rates(config.optim, num_epochs=config.num_epochs,
                                 steps_per_epoch=steps_per_epoch)
    lr = float(rates[group](epoch * steps_per_epoch + 3))
    np.testing.assert_allclose(lr, config.optim.base_lr * factor, rtol=1e-5, atol=1e-9)
    tx = optim.make_optimizer(config.optim, num_epochs=config.num_epochs,
                              steps_per_epoch=steps_per_epoch)
    params = {"kernel": jnp.ones(3), "alpha": jnp.ones(3), "cond": jnp.ones((2, 3))}
    updates, _ = tx.update(params, tx.init(params), params)
    assert {k: v.shape for k, v in updates.items()} == {k: v.shape for k, v in params.items()}

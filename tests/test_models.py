"""The registry, output shapes, input checks and structure of the paper's networks.

Shapes are taken with ``jax.eval_shape`` (the whole forward pass is traced, nothing is
compiled), so every registered model is checked in train and eval mode within seconds.
"""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from glif_jax.layers import RESIDUAL_BRANCH_SCALE, TDBN_THRESHOLD, TdBatchNorm
from glif_jax.errors import OptionError
from glif_jax.models import ModelOptions, get_model, get_spec, list_models
from glif_jax.neuron import NeuronConfig

PAPER_MODELS = ("resnet18", "resnet19", "cifarnet", "resnet34", "ms_resnet18", "ms_resnet34", "wide7b")
TIME_STEPS = 2
# Programs that draw from the default threefry PRNG take seconds to compile on a CPU; "rbg"
# draws from the same distributions and compiles fast.
FAST_COMPILING_KEY = jax.random.key(0, impl="rbg")
SMALL_INPUTS = {  # static images at a reduced size for ImageNet models; frames carry T
    "resnet18": (2, 32, 32, 3), "resnet19": (2, 32, 32, 3), "cifarnet": (2, 32, 32, 3),
    "resnet34": (1, 64, 64, 3), "ms_resnet18": (1, 64, 64, 3), "ms_resnet34": (1, 64, 64, 3),
    "wide7b": (2, TIME_STEPS, 48, 48, 2), "tiny_convnet": (2, 8, 8, 1),
}


def abstract_run(model, x, train):
    """Shapes of (variables, logits, updated batch stats) without compiling anything."""
    def run(key):
        variables = model.init(key, x, train=False)
        variables = {name: variables[name] for name in ("params", "batch_stats")}
        if train:
            logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
            return variables, logits, updates["batch_stats"]
        return variables, model.apply(variables, x, train=False), variables["batch_stats"]
    return jax.eval_shape(run, jax.random.key(0))


def test_registry_lists_every_paper_model_and_the_tiny_one():
    assert set(list_models()) == set(PAPER_MODELS) | {"tiny_convnet"}


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(SMALL_INPUTS))
def test_output_is_time_averaged_logits(name, train):
    """The paper's layer conventions and architectures: every model maps its input to logits [B, classes] float32, in both modes,
    with the BN running statistics as a separate collection of unchanged structure."""
    x = jnp.zeros(SMALL_INPUTS[name])
    variables, logits, batch_stats = abstract_run(get_model(name, num_classes=7, time_steps=TIME_STEPS), x, train)
    assert (logits.shape, logits.dtype) == ((x.shape[0], 7), jnp.float32)
    assert jax.tree.structure(batch_stats) == jax.tree.structure(variables["batch_stats"])
    assert jax.tree.leaves(variables["batch_stats"])


def test_head_rule_depends_on_the_number_of_classes():
    """The paper's architectures: Linear(512→256) → Linear(256→classes) when classes ≤ 50, else Linear(512→classes)."""
    for num_classes, widths in ((50, (256, 50)), (51, (51,)), (10, (256, 10)), (1000, (1000,))):
        assert get_spec("resnet18").head.widths(num_classes) == widths
        assert get_spec("ms_resnet18").head.widths(num_classes) == widths
    assert get_spec("resnet34").head.widths(10) == (10,)


def test_bfloat16_compute_keeps_float32_parameters_and_logits():
    """Mixed precision: parameters and running statistics float32, logits float32."""
    model = get_model("resnet18", num_classes=10, time_steps=TIME_STEPS, dtype=jnp.bfloat16)
    variables, logits, batch_stats = abstract_run(model, jnp.zeros(SMALL_INPUTS["resnet18"]), train=True)
    assert logits.dtype == jnp.float32
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    assert {leaf.dtype for leaf in jax.tree.leaves(batch_stats)} == {jnp.dtype(jnp.float32)}


def init_and_apply(module, x, **apply_options):
    """Initialise ``module`` on ``x`` and apply it in train mode, compiled as one program."""
    def run(key):
        variables = module.init(key, x, train=False)
        return module.apply(variables, x, train=True, **apply_options)
    return jax.jit(run)(FAST_COMPILING_KEY)


def test_tiny_convnet_runs_in_bfloat16():
    model = get_model("tiny_convnet", num_classes=10, time_steps=TIME_STEPS, dtype=jnp.bfloat16)
    x = jax.random.normal(jax.random.key(1), SMALL_INPUTS["tiny_convnet"])
    logits, _ = init_and_apply(model, x, mutable=["batch_stats"])
    assert logits.dtype == jnp.float32 and np.all(np.isfinite(logits)) and np.any(logits != 0)


def test_direct_encoding_and_time_averaged_readout_inside_the_model():
    """The paper's tdBN and time-merging conventions: the stem convolution sees the same image at every step (direct encoding), and
    the logits are the classifier output averaged over the T steps."""
    model = get_model("tiny_convnet", num_classes=10, time_steps=3)
    x = jax.random.normal(jax.random.key(1), SMALL_INPUTS["tiny_convnet"])
    logits, state = init_and_apply(model, x, capture_intermediates=True, mutable=["intermediates", "batch_stats"])
    captured = state["intermediates"]
    stem_conv = np.asarray(captured["stem"]["conv_norm"]["conv"]["__call__"][0]).reshape(3, 2, 8, 8, 16)
    np.testing.assert_array_equal(stem_conv[1], stem_conv[0])
    np.testing.assert_array_equal(stem_conv[2], stem_conv[0])
    per_step_logits = np.asarray(captured["head1"]["__call__"][0])
    assert per_step_logits.shape == (3, 2, 10)
    assert not np.allclose(per_step_logits[0], per_step_logits[-1])   # the neuron state makes steps differ
    np.testing.assert_allclose(logits, per_step_logits.mean(0), rtol=1e-6, atol=1e-7)


def record_batch_norms(name, **options):
    """Trace the model and record every BN's (path, k, V) by construction."""
    model = get_model(name, num_classes=10, time_steps=TIME_STEPS, **options)
    records = {}

    def interceptor(next_fun, args, kwargs, context):
        if isinstance(context.module, TdBatchNorm) and context.method_name == "__call__":
            records["/".join(context.module.path)] = (context.module.k, context.module.threshold)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        abstract_run(model, jnp.zeros(SMALL_INPUTS[name]), train=True)
    return records


@pytest.mark.parametrize("name", ["resnet18", "resnet19", "resnet34", "ms_resnet18", "ms_resnet34", "cifarnet"])
def test_root_two_scaling_exactly_on_the_two_summed_normalisations(name):
    """The paper's layer conventions and architectures: k = 1/√2 on the body's last BN and the shortcut BN of every residual block,
    k = 1 on every other BN; all are tdBN (V = 0.5)."""
    records = record_batch_norms(name)
    blocks = {path.split("/")[0] for path in records if "_block" in path}
    scaled = {path for path, (k, _) in records.items() if k == RESIDUAL_BRANCH_SCALE}
    expected = set()
    for block in blocks:
        expected.add(f"{block}/conv_norm2/norm")
        expected |= {path for path in records if path.startswith(f"{block}/shortcut/")}
    assert len(expected) == 2 * len(blocks)
    assert scaled == expected
    assert all(k == 1.0 for path, (k, _) in records.items() if path not in expected)
    assert {threshold for _, threshold in records.values()} == {TDBN_THRESHOLD}


def test_wide7b_uses_plain_batch_norm_everywhere():
    """The paper's architectures: 7B-wideNet has plain BatchNorm (k·V = 1), no residual factor."""
    records = record_batch_norms("wide7b")
    assert len(records) == 1 + 8 + 1 + 6
    assert set(records.values()) == {(1.0, 1.0)}


def test_width_change_option_selects_the_kernel_of_the_two_width_changing_convs():
    """The paper's architectures: 3×3 (paper text, default) or 1×1 (authors' code) for 2→64 and 64→128."""
    for option, kernel in (("3x3", 3), ("1x1", 1)):
        spec = get_spec("wide7b", width_change=option)
        assert spec.stem.kernel == kernel and spec.body[2].kernel == kernel
    assert get_spec("wide7b").stem.kernel == 3


def test_sew_connections():
    """SEW blocks: ADD a + x, AND a·x, IAND (1 − a)·x, with a the block's body output."""
    from glif_jax.models.blocks import SEWBlock
    from glif_jax.models.layer_settings import LayerSettings
    x = (jax.random.uniform(jax.random.key(2), (3, 2, 5, 5, 4)) > 0.5).astype(jnp.float32)
    for connection in ("ADD", "AND", "IAND"):
        block = SEWBlock(4, connection, LayerSettings(norm="batchnorm"))
        out, state = init_and_apply(block, x, capture_intermediates=True, mutable=["intermediates", "batch_stats"])
        body = np.asarray(state["intermediates"]["unit2"]["__call__"][0])
        assert 0 < body.mean() < 1
        expected = {"ADD": body + x, "AND": body * x, "IAND": (1 - body) * x}[connection]
        np.testing.assert_array_equal(out, expected)


def test_ms_block_output_is_not_spikes_and_basic_block_output_is():
    """The paper's architectures: MS blocks end with the sum (no neuron), BasicBlocks with a GLIF."""
    from glif_jax.models.blocks import BasicBlock, MembraneShortcutBlock
    from glif_jax.models.layer_settings import LayerSettings
    x = jax.random.normal(jax.random.key(3), (2, 2, 6, 6, 4))
    for block, binary in ((BasicBlock(8, 2, LayerSettings()), True), (MembraneShortcutBlock(8, 2, LayerSettings()), False)):
        out, _ = init_and_apply(block, x, mutable=["batch_stats"])
        assert out.shape == (2, 2, 3, 3, 8)
        assert np.all(np.isin(np.asarray(out), [0.0, 1.0])) == binary


@pytest.mark.parametrize("name,bad_shape,problem", [
    ("resnet18", (2, 32, 32), "rank 3"),
    ("resnet18", (2, 32, 32, 1), "1 channels"),
    ("resnet18", (2, 4, 32, 32, 3), "rank 5"),
    ("cifarnet", (2, 28, 28, 3), "spatial size"),
    ("wide7b", (2, 3, 48, 48, 2), "3 time steps"),
    ("wide7b", (2, 48, 48, 2), "rank 4"),
    ("ms_resnet18", (1, 64, 64, 2), "2 channels"),
])
def test_bad_input_names_the_model_and_the_expected_shape(name, bad_shape, problem):
    model = get_model(name, num_classes=10, time_steps=TIME_STEPS)
    expected = get_spec(name).input.expected_shape(TIME_STEPS)
    with pytest.raises(ValueError) as error:
        jax.eval_shape(lambda key: model.init(key, jnp.zeros(bad_shape), train=False), jax.random.key(0))
    message = str(error.value)
    assert f"'{name}'" in message and expected in message and problem in message


def test_unknown_model_option_and_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet50'.*resnet18"):
        get_model("resnet50", num_classes=10, time_steps=4)
    with pytest.raises(ValueError, match="'resnet18' has no option.*width_change"):
        get_model("resnet18", num_classes=10, time_steps=4, width_change="1x1")
    with pytest.raises(ValueError, match=r"width_change: expected one of \('3x3', '1x1'\), got '5x5'"):
        get_model("wide7b", num_classes=10, time_steps=4, width_change="5x5")
    with pytest.raises(ValueError, match="time_steps: expected an integer >= 1, got 0"):
        get_model("resnet18", num_classes=10, time_steps=0)
    with pytest.raises(ValueError, match="num_classes: expected an integer >= 1, got 0"):
        get_model("resnet18", num_classes=0, time_steps=4)


def test_the_config_reader_builds_the_configured_model():
    """The config schema's ``config.model`` selects name, T, neuron, init and options."""
    config = ml_collections.ConfigDict({
        "name": "wide7b", "time_steps": 3, "channel_wise": False, "init": "dvs",
        "neuron": {"kind": "glif", "gates": "hard", "static_gates": False, "static_primitives": False,
                   "surrogate": "rectangular", "surrogate_width": None},
        "kwargs": {"width_change": "1x1", "connection": "IAND"},
    })
    model = ModelOptions.from_config(config).build(10, dtype=jnp.bfloat16, bn_axis_name="batch")
    assert (model.time_steps, model.num_classes, model.channel_wise, model.neuron_init) == (3, 10, False, "dvs")
    assert model.neuron == NeuronConfig(gates="hard")
    assert model.dtype == jnp.bfloat16 and model.bn_axis_name == "batch"
    assert model.spec == get_spec("wide7b", width_change="1x1", connection="IAND")


def wide7b_model_config(**overrides):
    values = {
        "name": "wide7b", "time_steps": 3, "channel_wise": False, "init": "dvs", "remat": False,
        "neuron": {"kind": "glif", "gates": "hard", "static_gates": False, "static_primitives": False,
                   "surrogate": "rectangular", "surrogate_width": None},
        "kwargs": {"width_change": "1x1", "connection": "IAND"},
    }
    values.update(overrides)
    return ml_collections.ConfigDict(values)


def test_model_options_hold_the_config_checked_and_build_the_same_model_each_time():
    options = ModelOptions.from_config(wide7b_model_config())
    assert options.spec == get_spec("wide7b", width_change="1x1", connection="IAND")
    assert (options.time_steps, options.channel_wise, options.neuron_init, options.remat) == (3, False, "dvs", False)
    assert options.build(11) == ModelOptions.from_config(wide7b_model_config()).build(11)
    built = options.build(5, dtype=jnp.bfloat16, bn_axis_name="batch")
    assert built.spec is options.spec and (built.num_classes, built.dtype, built.bn_axis_name) == (
        5, jnp.bfloat16, "batch")
    with pytest.raises(OptionError, match="^num_classes: expected an integer >= 1, got 0"):
        options.build(0)


@pytest.mark.parametrize("overrides, key, problem", [
    ({"name": "resnet50"}, "name", "unknown model 'resnet50'"),
    ({"time_steps": 0}, "time_steps", "expected an integer >= 1, got 0"),
    ({"channel_wise": "no"}, "channel_wise", "expected True or False"),
    ({"init": "mnist"}, "init", "unknown preset 'mnist'"),
    ({"init": {"tau": 0.3, "lam": 0.05, "v_th": 1.5, "v_re": 0.45, "cond": 0.6}}, "init.v_th",
     r"values live in \(0, 1\)"),
    ({"neuron": {"kind": "izhikevich"}}, "neuron.kind", "unknown neuron 'izhikevich'"),
    ({"neuron": {"kindd": "lif"}}, "neuron", "unexpected keyword argument 'kindd'"),
    ({"kwargs": {"width_change": "5x5"}}, "kwargs.width_change", r"expected one of \('3x3', '1x1'\), got '5x5'"),
    ({"kwargs": {"connection": "XOR"}}, "kwargs.connection", r"expected one of \('ADD', 'AND', 'IAND'\)"),
    ({"kwargs": {"width_multiplier": -1.0}}, "kwargs.width_multiplier", "expected a finite number > 0"),
    ({"kwargs": {"depth": 3}}, "kwargs.depth", r"model 'wide7b' has no option\(s\) \['depth'\]"),
])
def test_model_options_name_the_config_key_of_a_bad_value(overrides, key, problem):
    with pytest.raises(OptionError) as error:
        ModelOptions.from_config(wide7b_model_config(**overrides))
    assert error.value.option == key
    assert re.search(problem, error.value.problem), error.value.problem


def test_explicit_neuron_initial_values_reach_every_glif_layer():
    """The GLIF paper's neuron equations initialisation given as explicit values; the model stays hashable (jit-static)."""
    values = {"tau": 0.3, "lam": 0.05, "v_th": 0.4, "v_re": 0.45, "cond": 0.6}
    model = get_model("tiny_convnet", num_classes=10, time_steps=3,
                      neuron_init=ml_collections.ConfigDict(values).to_dict())
    hash(model)
    x = jnp.zeros(SMALL_INPUTS["tiny_convnet"])
    params = jax.jit(lambda key: model.init(key, x, train=False))(FAST_COMPILING_KEY)["params"]
    for layer in ("stem", "conv1"):
        np.testing.assert_allclose(jax.nn.sigmoid(params[layer]["neuron"]["v_re"]), 0.45, rtol=1e-6)
        np.testing.assert_allclose(jax.nn.sigmoid(params[layer]["neuron"]["cond"]), 0.6, rtol=1e-6)


def test_init_is_a_deprecated_name_of_neuron_init():
    with pytest.warns(DeprecationWarning, match="neuron_init"):
        model = get_model("tiny_convnet", num_classes=10, time_steps=3, init="dvs")
    assert model == get_model("tiny_convnet", num_classes=10, time_steps=3, neuron_init="dvs")
    with pytest.raises(ValueError, match="neuron_init only"):
        get_model("tiny_convnet", num_classes=10, time_steps=3, init="dvs", neuron_init="imagenet")


def conv_widths(spec) -> list[int]:
    return [spec.stem.features] + [item.features for item in spec.body if hasattr(item, "features")]


def test_width_multiplier_scales_every_conv_and_hidden_head_width():
    """Narrow variants: conv and hidden head widths times the multiplier, rounded half up, >= 1;
    depths, strides, kernels, input and the number of classes unchanged; 1.0 is the paper's net."""
    assert get_spec("resnet18", width_multiplier=1.0) == get_spec("resnet18")
    quarter = get_spec("resnet18", width_multiplier=0.25)
    assert conv_widths(quarter) == [16, 16, 32, 64, 128]
    assert quarter.head.widths(10) == (64, 10) and quarter.head.widths(100) == (100,)
    full = get_spec("resnet18")
    assert [(s.depth, s.stride, s.block) for s in quarter.body] == [(s.depth, s.stride, s.block) for s in full.body]
    assert (quarter.input, quarter.stem.kernel, quarter.reduction, quarter.norm) == (
        full.input, full.stem.kernel, full.reduction, full.norm)
    # 64·0.3 = 19.2, 128·0.3 = 38.4, 256·0.3 = 76.8, 512·0.3 = 153.6
    assert conv_widths(get_spec("resnet18", width_multiplier=0.3)) == [19, 19, 38, 77, 154]
    assert get_spec("resnet18", width_multiplier=0.3).head.hidden == (77,)
    # 16·5/32 = 2.5 → 3 (half up), 32·5/32 = 5
    assert conv_widths(get_spec("tiny_convnet", width_multiplier=5 / 32)) == [3, 5]
    assert conv_widths(get_spec("resnet18", width_multiplier=1e-6)) == [1, 1, 1, 1, 1]
    assert conv_widths(get_spec("cifarnet", width_multiplier=2)) == [256, 512, 1024, 2048, 1024]
    wide7b = get_spec("wide7b", width_multiplier=0.5, width_change="1x1", connection="IAND")
    assert conv_widths(wide7b) == [32, 32, 64, 64, 64, 64]
    assert wide7b.stem.kernel == 1 and {s.connection for s in wide7b.body if hasattr(s, "connection")} == {"IAND"}


@pytest.mark.parametrize("multiplier", [0, -0.5, float("nan"), float("inf"), "0.25", True])
def test_bad_width_multiplier_is_a_clear_error(multiplier):
    with pytest.raises(ValueError, match="width_multiplier: expected a finite number > 0"):
        get_model("resnet18", num_classes=10, time_steps=2, width_multiplier=multiplier)


@pytest.mark.parametrize("name", ["resnet18", "resnet19", "cifarnet", "wide7b"])
def test_narrow_models_give_logits_and_narrow_layers(name):
    """At width 0.25 the whole forward pass keeps its shapes: logits [B, classes]; the last
    feature map has a quarter of the channels (the head's first kernel) in train and eval mode."""
    x = jnp.zeros(SMALL_INPUTS[name])
    model = get_model(name, num_classes=7, time_steps=TIME_STEPS, width_multiplier=0.25)
    for train in (True, False):
        variables, logits, _ = abstract_run(model, x, train)
        assert (logits.shape, logits.dtype) == ((x.shape[0], 7), jnp.float32)
    last_width = conv_widths(get_spec(name))[-1] // 4
    flattened = {"cifarnet": 8 * 8, "wide7b": 3 * 3}.get(name, 1)
    head_widths = get_spec(name).head.widths(7)
    first_out = head_widths[0] // 4 if len(head_widths) > 1 else 7
    assert variables["params"]["head1"]["kernel"].shape == (last_width * flattened, first_out)


def test_model_options_list_every_option_with_its_default():
    """config.model.kwargs may set these: width_multiplier everywhere, plus the model's own."""
    from glif_jax.models import model_options

    assert model_options("resnet18") == {"width_multiplier": 1.0}
    assert model_options("wide7b") == {"width_multiplier": 1.0, "width_change": "3x3", "connection": "ADD"}
    with pytest.raises(ValueError, match="unknown model 'resnet50'"):
        model_options("resnet50")
    with pytest.raises(ValueError, match=r"'resnet18' has no option\(s\) \['depth'\]; its options: width_multiplier"):
        get_spec("resnet18", depth=3)

"""Trainable-parameter counts of every architecture of the paper against the authors' PyTorch
models (channel-wise GLIF, BN running statistics not counted). Counted from shapes only
(``jax.eval_shape``), so the full-size ImageNet models cost no compilation."""

import math

import jax
import jax.numpy as jnp
import pytest

from glif_jax.models import get_model
from glif_jax.neuron import NeuronConfig, PARAM_NAMES

CIFAR = (32, 32, 3)
IMAGENET = (224, 224, 3)

# model, options, classes, T, total, of which GLIF, number of GLIF layers
AUTHORS_COUNTS = [
    ("resnet18", {}, 10, 4, 11_347_456, 42_944, 17),
    ("resnet18", {}, 10, 6, 11_355_264, 50_752, 17),
    ("resnet18", {}, 100, 4, 11_265_024, 42_944, 17),
    ("resnet19", {}, 10, 4, 12_749_824, 49_280, 17),
    ("resnet19", {}, 100, 6, 12_676_352, 58_240, 17),
    ("cifarnet", {}, 10, 4, 45_030_656, 26_752, 5),
    ("resnet34", {}, 1000, 4, 21_890_304, 83_776, 33),
    ("ms_resnet18", {}, 1000, 6, 11_739_584, 44_928, 17),
    ("ms_resnet34", {}, 1000, 4, 21_885_376, 78_848, 33),
    ("wide7b", {"width_change": "1x1"}, 10, 16, 1_236_298, 33_856, 16),
    ("wide7b", {"width_change": "3x3"}, 10, 16, 1_269_002 + 33_856, 33_856, 16),
]


def input_shape(name: str, time_steps: int) -> tuple[int, ...]:
    if name == "wide7b":
        return (1, time_steps, 48, 48, 2)
    if name == "tiny_convnet":
        return (1, 8, 8, 1)
    return (1,) + (IMAGENET if name in ("resnet34", "ms_resnet18", "ms_resnet34") else CIFAR)


def count_parameters(name, options, num_classes, time_steps, **model_args) -> tuple[int, int, int]:
    """(total, GLIF, number of GLIF layers) from the shapes of ``init``'s params."""
    model = get_model(name, num_classes=num_classes, time_steps=time_steps, **options, **model_args)
    x = jnp.zeros(input_shape(name, time_steps))
    shapes = jax.eval_shape(lambda key: model.init(key, x, train=False), jax.random.key(0))["params"]
    total = neuron = 0
    neuron_layers = set()
    for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
        size = math.prod(leaf.shape)
        total += size
        if path[-1].key in PARAM_NAMES:
            neuron += size
            neuron_layers.add(tuple(entry.key for entry in path[:-1]))
    return total, neuron, len(neuron_layers)


@pytest.mark.parametrize("name,options,num_classes,time_steps,total,neuron,layers", AUTHORS_COUNTS)
def test_parameter_counts_match_the_authors_models(name, options, num_classes, time_steps, total, neuron, layers):
    """The paper's architectures: same total and same GLIF share (7·C + T·C per channel-wise GLIF layer)."""
    assert count_parameters(name, options, num_classes, time_steps) == (total, neuron, layers)


@pytest.mark.parametrize("name,options,num_classes,time_steps,total,neuron,layers",
                         [AUTHORS_COUNTS[0], AUTHORS_COUNTS[7], AUTHORS_COUNTS[9]])
def test_layer_wise_glif_has_seven_plus_t_parameters_per_layer(name, options, num_classes, time_steps, total,
                                                               neuron, layers):
    """The GLIF paper's neuron equations: layer-wise, every gate/primitive is a scalar and cond has shape [T]."""
    counted = count_parameters(name, options, num_classes, time_steps, channel_wise=False)
    assert counted == (total - neuron + layers * (7 + time_steps), layers * (7 + time_steps), layers)


def test_neuron_kind_sets_the_neuron_parameters():
    """The GLIF paper's neuron equations: plain LIF needs tau, v_th; GLIF_f the five primitives (cond [T, C]); GLIF all eight."""
    name, options, num_classes, time_steps, total, neuron, layers = AUTHORS_COUNTS[0]
    channels = neuron // (7 + time_steps)
    for kind, per_channel in (("lif", 2), ("glif_f", 4 + time_steps), ("glif", 7 + time_steps)):
        counted = count_parameters(name, options, num_classes, time_steps, neuron=NeuronConfig(kind=kind))
        assert counted == (total - neuron + per_channel * channels, per_channel * channels, layers)


def test_tiny_convnet_is_small():
    """The default digits model: conv(1→16), conv(16→32, s2), Linear(32→10), two GLIF layers."""
    conv_and_bn = 9 * 16 + 2 * 16 + 9 * 16 * 32 + 2 * 32
    glif = (7 + 4) * (16 + 32)
    assert count_parameters("tiny_convnet", {}, 10, 4) == (conv_and_bn + glif + 32 * 10, glif, 2)


# Narrow variants (width_multiplier): counts from the paper's architecture, written out here.
def glif_count(channels: int, time_steps: int) -> int:
    """Channel-wise GLIF: alpha, beta, gamma, tau, lam, v_th, v_re per channel and cond [T, C]."""
    return (7 + time_steps) * channels


def conv_bn_glif_count(cin: int, cout: int, time_steps: int, kernel: int = 3) -> int:
    return kernel * kernel * cin * cout + 2 * cout + glif_count(cout, time_steps)


def cifar_resnet_count(stem: int, widths, depths, strides, hidden: int, classes: int, time_steps: int) -> int:
    """The paper's architectures CIFAR ResNet: stem conv3x3 → tdBN → GLIF; BasicBlocks: conv3x3(s) → tdBN → GLIF →
    conv3x3 → tdBN, shortcut tdBN or conv1x1(s) → tdBN, GLIF after the sum; head c→hidden→classes."""
    total = conv_bn_glif_count(3, stem, time_steps)
    cin = stem
    for width, depth, stride in zip(widths, depths, strides):
        for block in range(depth):
            block_stride = stride if block == 0 else 1
            total += conv_bn_glif_count(cin, width, time_steps)          # conv1 → BN → GLIF
            total += 9 * width * width + 2 * width                       # conv2 → BN
            total += 2 * width if (cin == width and block_stride == 1) else cin * width + 2 * width
            total += glif_count(width, time_steps)                       # GLIF after the sum
            cin = width
    return total + cin * hidden + hidden * classes


def cifarnet_count(widths, hidden, classes: int, time_steps: int) -> int:
    """The paper's architectures CIFARNet: five conv3x3 → tdBN → GLIF units (two 2×2 poolings: 8×8 left), then
    Linear(c·8·8 → hidden[0]) → Linear(hidden[0] → hidden[1]) → Linear(hidden[1] → classes)."""
    total, cin = 0, 3
    for width in widths:
        total += conv_bn_glif_count(cin, width, time_steps)
        cin = width
    features = (cin * 8 * 8,) + tuple(hidden) + (classes,)
    return total + sum(a * b for a, b in zip(features[:-1], features[1:]))


RESNET18_TABLE = dict(depths=(2, 2, 2, 2), strides=(1, 1, 2, 2))


def test_architecture_formulas_reproduce_the_authors_counts():
    """The reference formulas below are themselves right: at full width they give the authors' totals."""
    assert cifar_resnet_count(64, (64, 128, 256, 512), hidden=256, classes=10, time_steps=4,
                              **RESNET18_TABLE) == AUTHORS_COUNTS[0][4]
    assert cifar_resnet_count(128, (128, 256, 512), (3, 3, 2), (1, 2, 2), hidden=256, classes=10,
                              time_steps=4) == AUTHORS_COUNTS[3][4]
    assert cifarnet_count((128, 256, 512, 1024, 512), (1024, 512), 10, 4) == AUTHORS_COUNTS[5][4]


@pytest.mark.parametrize("time_steps", [4, 6])
def test_quarter_width_resnet18_parameter_count(time_steps):
    """width_multiplier 0.25: stem 16, stages 16/32/64/128, head 128→64→10 (720 256 parameters at T = 4)."""
    expected = cifar_resnet_count(16, (16, 32, 64, 128), hidden=64, classes=10, time_steps=time_steps,
                                  **RESNET18_TABLE)
    glif = glif_count(16 + 4 * 16 + 4 * 32 + 4 * 64 + 4 * 128, time_steps)
    assert count_parameters("resnet18", {"width_multiplier": 0.25}, 10, time_steps) == (expected, glif, 17)
    if time_steps == 4:
        assert expected == 720_256


def test_quarter_width_resnet19_and_cifarnet_parameter_counts():
    """ResNet-19 at 0.25: stem 32, stages 32/64/128 [3, 3, 2]; CIFARNet at 0.25: 32, 64, 128, 256, 128
    and head 128·8·8→256→128→classes."""
    resnet19 = cifar_resnet_count(32, (32, 64, 128), (3, 3, 2), (1, 2, 2), hidden=64, classes=10, time_steps=4)
    assert count_parameters("resnet19", {"width_multiplier": 0.25}, 10, 4)[0] == resnet19
    cifarnet = cifarnet_count((32, 64, 128, 256, 128), (256, 128), 10, 4)
    assert count_parameters("cifarnet", {"width_multiplier": 0.25}, 10, 4) == (cifarnet, glif_count(608, 4), 5)

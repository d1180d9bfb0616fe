"""The authors' networks as state-dict layouts, derived from glif-jax's own network descriptions.

Facts from the authors' repository (CAS-CLab/Gated-LIF), which this module encodes:

- Convs, tdBN and linears sit inside spikingjelly's ``SeqToANNContainer`` (``clock_driven``
  API, SpikingJelly 0.0.0.0.10 as their README pins), which holds one layer as ``.module``
  and several as ``.module.<i>``: a conv → tdBN pair is ``<prefix>.module.0`` (conv) and
  ``<prefix>.module.1`` (norm).
- ResNets (``networks_for_CIFAR.py``: ``ResNet_18_stand_CW``, ``ResNet_19_cifar_CW``;
  ``networks_for_ImageNet.py``: ``ResNet_18_stand_CW_MS``): stem ``conv1.0`` (conv, tdBN)
  and ``conv1.1`` (GLIF); blocks ``features.<i>`` numbered over all stages (``blocks.py``):
  BasicBlock_CW ``body.0`` (conv, tdBN), ``body.1`` (GLIF), ``body.2`` (conv, tdBN k=1/√2),
  ``lif`` (GLIF after the sum); BasicBlock_CW_MS ``body.0`` (GLIF), ``body.1`` (conv, tdBN),
  ``body.2`` (GLIF), ``body.3`` (conv, tdBN k=1/√2), no GLIF after the sum; shortcut
  ``downsample.module`` (tdBN k=1/√2 alone) or ``downsample.0.module.{0,1}`` (1×1 conv,
  tdBN k=1/√2). Head ``lastave``: Linear(512→256) → Linear(256→classes) up to 50 classes,
  else Linear(512→classes), bias-free; as ``nn.Sequential`` (``lastave.<i>``, ResNet-18 and
  MS-ResNet-18) or as ``SeqToANNContainer`` (``lastave.module.<i>`` / ``lastave.module``, ResNet-19).
- 7B-wideNet for CIFAR10-DVS (``cifar10dvs/smodels.py``, ``SEWResNet_GLIF_dsr`` building
  ``ResNetN_GLIF``): ``conv.<j>`` numbers every item of one ``nn.Sequential``: conv units
  ``conv.<j>.0`` (conv, ``nn.BatchNorm2d``) and ``conv.<j>.1`` (GLIF), SEW blocks
  ``conv.<j>.conv.{0,1}`` (two conv units), average poolings (no parameters); the 2→64 and
  64→128 convs are 1×1 there. Head ``out``: Linear(C·H·W → classes) with bias, after
  ``nn.Flatten(2)`` of a ``[T, B, C, H, W]`` map, so its inputs are in C·H·W order.
- GLIF (``LIFSpike_CW`` in ``layers.py`` and ``cifar10dvs/layers.py``): parameters, in
  this order, ``alpha, beta, gamma, tau, Vth, leak, reVth, conduct``, all logits (the
  neuron applies ``sigmoid``); ``[C]`` each and ``conduct [T, C]`` (layer-wise ``LIFSpike``:
  scalars and ``conduct [T]``). In the DVS code ``alpha, beta, gamma`` are float64.
- tdBN (``tdBatchNorm`` in ``layers.py``): ``nn.BatchNorm2d`` plus a buffer ``Vth`` (0.5)
  and a plain attribute ``alpha`` (k, not saved): ``k·Vth·(x − mean)/√(var + eps)·weight + bias``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from glif_jax.layers import RESIDUAL_BRANCH_SCALE
from glif_jax.models.description import AvgPool, ConvUnit, NetworkSpec, Stage

GLIF_NAMES: tuple[tuple[str, str], ...] = (
    ("alpha", "alpha"), ("beta", "beta"), ("gamma", "gamma"), ("tau", "tau"),
    ("Vth", "v_th"), ("leak", "lam"), ("reVth", "v_re"), ("conduct", "cond"),
)
"""(their name, glif-jax name) of every GLIF parameter, in their registration order."""

HeadKeys = Literal["sequential", "container", "out"]
BatchNorm = Literal["tdbn", "sync", "plain"]


@dataclasses.dataclass(frozen=True)
class TheirNetwork:
    """One of the authors' networks that a glif-jax model reproduces.

    name: the glif-jax registry name.
    their_class: their class (and file) building it.
    base_stem_width: the stem's width at width multiplier 1 (infers the multiplier).
    head_keys: how their head's keys read: ``"sequential"`` (``lastave.<i>``),
      ``"container"`` (``lastave.module.<i>``) or ``"out"`` (one linear ``out``).
    batch_norm: what their published checkpoint of it holds: ``"tdbn"`` (tdBatchNorm with
      its ``Vth`` buffer), ``"sync"`` (tdBN converted to ``SyncBatchNorm``: no ``Vth``, and
      no k·V in the forward pass) or ``"plain"`` (``nn.BatchNorm2d``).
    data_parallel: whether their published checkpoint's keys start with ``module.``.
    neuron_init: the glif-jax GLIF preset of the dataset (only initial values; an import
      overwrites them).
    """

    name: str
    their_class: str
    base_stem_width: int
    head_keys: HeadKeys
    batch_norm: BatchNorm
    data_parallel: bool
    neuron_init: str

    @property
    def family(self) -> Literal["resnet", "wide"]:
        return "wide" if self.head_keys == "out" else "resnet"


NETWORKS: dict[str, TheirNetwork] = {
    "resnet18": TheirNetwork("resnet18", "ResNet_18_stand_CW (networks_for_CIFAR.py)", 64, "sequential",
                             "tdbn", False, "cifar"),
    "resnet19": TheirNetwork("resnet19", "ResNet_19_cifar_CW (networks_for_CIFAR.py)", 128, "container",
                             "tdbn", False, "cifar"),
    # Their ImageNet evaluation (train.py --imagenet --eval) converts every tdBatchNorm to
    # SyncBatchNorm and strips "module." before a strict load: the published checkpoint
    # comes from multi-GPU DistributedDataParallel training with SyncBatchNorm.
    "ms_resnet18": TheirNetwork("ms_resnet18", "ResNet_18_stand_CW_MS (networks_for_ImageNet.py)", 64,
                                "sequential", "sync", True, "imagenet"),
    "wide7b": TheirNetwork("wide7b", "SEWResNet_GLIF_dsr (cifar10dvs/smodels.py)", 64, "out",
                           "plain", False, "dvs"),
}


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer with parameters, in our variables and in their state dict.

    kind: ``"conv"`` (their weight ``[O, I, kh, kw]``), ``"norm"`` (``[C]`` each),
      ``"neuron"`` (GLIF, ``[C]`` or ``[]``, conduct ``[T, C]`` or ``[T]``), ``"linear"``
      (their weight ``[O, I]``, bias ``[O]``).
    ours: the module's path in ``params`` / ``batch_stats``, e.g. ``("stage1_block1", "conv_norm1", "conv")``.
    theirs: the module's key prefix in their state dict, e.g. ``"features.0.body.0.module.0"``.
    shape: their weight's shape (conv, linear) or the channel count ``(C,)`` (norm, neuron).
    k: tdBN's branch factor (norm): 1, or 1/√2 before a residual sum.
    flattened_chw: for a linear after a flatten, their input layout ``(C, H, W)``.
    bias: whether a linear has a bias.
    """

    kind: Literal["conv", "norm", "neuron", "linear"]
    ours: tuple[str, ...]
    theirs: str
    shape: tuple[int, ...]
    k: float = 1.0
    flattened_chw: tuple[int, int, int] | None = None
    bias: bool = False


def _conv_norm(ours: tuple[str, ...], theirs: str, cout: int, cin: int, kernel: int, k: float = 1.0) -> list[Layer]:
    """A conv → norm pair inside a ``SeqToANNContainer`` at ``theirs``."""
    return [Layer("conv", ours + ("conv",), f"{theirs}.module.0", (cout, cin, kernel, kernel)),
            Layer("norm", ours + ("norm",), f"{theirs}.module.1", (cout,), k)]


def _resnet_layers(spec: NetworkSpec, num_classes: int, head_keys: HeadKeys) -> list[Layer]:
    stem = spec.stem
    layers = _conv_norm(("stem", "conv_norm"), "conv1.0", stem.features, spec.input.channels, stem.kernel)
    layers.append(Layer("neuron", ("stem", "neuron"), "conv1.1", (stem.features,)))
    channels, index = stem.features, 0
    for stage_number, stage in enumerate(spec.body, start=1):
        if not isinstance(stage, Stage) or stage.block not in ("basic", "ms"):
            raise ValueError(f"{spec.name}: their ResNets have only residual stages, got {stage!r}")
        for block_number in range(1, stage.depth + 1):
            ours, theirs = (f"stage{stage_number}_block{block_number}",), f"features.{index}"
            features, stride = stage.features, stage.stride if block_number == 1 else 1
            if stage.block == "basic":
                layers += _conv_norm(ours + ("conv_norm1",), f"{theirs}.body.0", features, channels, 3)
                layers.append(Layer("neuron", ours + ("neuron1",), f"{theirs}.body.1", (features,)))
                layers += _conv_norm(ours + ("conv_norm2",), f"{theirs}.body.2", features, features, 3,
                                     RESIDUAL_BRANCH_SCALE)
            else:
                layers.append(Layer("neuron", ours + ("neuron1",), f"{theirs}.body.0", (channels,)))
                layers += _conv_norm(ours + ("conv_norm1",), f"{theirs}.body.1", features, channels, 3)
                layers.append(Layer("neuron", ours + ("neuron2",), f"{theirs}.body.2", (features,)))
                layers += _conv_norm(ours + ("conv_norm2",), f"{theirs}.body.3", features, features, 3,
                                     RESIDUAL_BRANCH_SCALE)
            if channels == features and stride == 1:
                layers.append(Layer("norm", ours + ("shortcut", "norm"), f"{theirs}.downsample.module",
                                    (features,), RESIDUAL_BRANCH_SCALE))
            else:
                layers += _conv_norm(ours + ("shortcut", "conv_norm"), f"{theirs}.downsample.0", features,
                                     channels, 1, RESIDUAL_BRANCH_SCALE)
            if stage.block == "basic":
                layers.append(Layer("neuron", ours + ("neuron_out",), f"{theirs}.lif", (features,)))
            channels, index = features, index + 1
    widths = spec.head.widths(num_classes)
    for number, (cin, cout) in enumerate(zip((channels, *widths[:-1]), widths)):
        if head_keys == "sequential":
            theirs = f"lastave.{number}"
        elif head_keys == "container":
            theirs = f"lastave.module.{number}" if len(widths) > 1 else "lastave.module"
        else:
            raise ValueError(f"{spec.name}: their ResNet heads are 'sequential' or 'container', not {head_keys!r}")
        layers.append(Layer("linear", (f"head{number + 1}",), theirs, (cout, cin), bias=spec.head.bias))
    return layers


def _wide_layers(spec: NetworkSpec, num_classes: int) -> list[Layer]:
    def unit(ours: tuple[str, ...], theirs: str, item: ConvUnit, cin: int) -> list[Layer]:
        if item.stride != 1 or item.pad != item.kernel // 2:
            raise ValueError(f"{spec.name}: their 7B-wideNet convs keep the resolution, got {item!r}")
        return _conv_norm(ours + ("conv_norm",), f"{theirs}.0", item.features, cin, item.kernel) + [
            Layer("neuron", ours + ("neuron",), f"{theirs}.1", (item.features,))]

    layers = unit(("stem",), "conv.0", spec.stem, spec.input.channels)
    channels, index, size = spec.stem.features, 1, tuple(spec.input.size)
    conv_count = stage_count = 0
    for item in spec.body:
        if isinstance(item, ConvUnit):
            conv_count += 1
            layers += unit((f"conv{conv_count}",), f"conv.{index}", item, channels)
            channels, index = item.features, index + 1
        elif isinstance(item, Stage) and item.block == "sew":
            stage_count += 1
            for block_number in range(1, item.depth + 1):
                ours, theirs = (f"stage{stage_count}_block{block_number}",), f"conv.{index}.conv"
                layers += unit(ours + ("unit1",), f"{theirs}.0", ConvUnit(item.features), channels)
                layers += unit(ours + ("unit2",), f"{theirs}.1", ConvUnit(item.features), item.features)
                channels, index = item.features, index + 1
        elif isinstance(item, AvgPool):
            size, index = (size[0] // item.window, size[1] // item.window), index + 1
        else:
            raise ValueError(f"{spec.name}: their 7B-wideNet has no {item!r}")
    if spec.head.widths(num_classes) != (num_classes,) or spec.reduction != "flatten":
        raise ValueError(f"{spec.name}: their 7B-wideNet ends in one linear layer after a flatten")
    chw = (channels, *size)
    layers.append(Layer("linear", ("head1",), "out", (num_classes, math.prod(chw)), flattened_chw=chw,
                        bias=spec.head.bias))
    return layers


def their_layers(network: TheirNetwork, spec: NetworkSpec, num_classes: int, head_keys: HeadKeys) -> list[Layer]:
    """Every layer with parameters of ``spec`` (ours, already width-scaled), in their state dict's order
    (``head_keys``: how the checkpoint names its ResNet head)."""
    if network.family == "wide":
        return _wide_layers(spec, num_classes)
    return _resnet_layers(spec, num_classes, head_keys)


def norm_keys(batch_norm: BatchNorm) -> tuple[str, ...]:
    """Their state-dict entries of one normalisation, in order (``num_batches_tracked`` is an int64 counter)."""
    keys = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    return keys + ("Vth",) if batch_norm == "tdbn" else keys


def their_shapes(layers: list[Layer], *, time_steps: int, channel_wise: bool,
                 batch_norm: BatchNorm) -> dict[str, tuple[int, ...]]:
    """Their state dict's keys (in order) and shapes for ``layers``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in layers:
        if layer.kind in ("conv", "linear"):
            shapes[f"{layer.theirs}.weight"] = layer.shape
            if layer.bias:
                shapes[f"{layer.theirs}.bias"] = layer.shape[:1]
        elif layer.kind == "norm":
            for key in norm_keys(batch_norm):
                shapes[f"{layer.theirs}.{key}"] = () if key in ("num_batches_tracked", "Vth") else layer.shape
        else:
            per_channel = layer.shape if channel_wise else ()
            for theirs, _ in GLIF_NAMES:
                shapes[f"{layer.theirs}.{theirs}"] = (time_steps, *per_channel) if theirs == "conduct" else per_channel
    return shapes

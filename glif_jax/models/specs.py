"""The paper's architectures as data (the paper's architectures), one function per table row.

Each function returns a :class:`NetworkSpec`; its keyword arguments are the model's options
(``config.model.kwargs``), besides ``width_multiplier``, which every model has
(:func:`glif_jax.models.get_spec` applies it). Convs have no bias; every BN is tdBN unless
``norm`` says otherwise.
"""

from __future__ import annotations

from typing import Literal

from glif_jax.errors import check_choice
from glif_jax.models.description import (SEW_CONNECTIONS, AvgPool, ConvUnit, Head, InputSpec, NetworkSpec, Stage,
                                         stages)

CIFAR_IMAGE = InputSpec("image", channels=3)
IMAGENET_IMAGE = InputSpec("image", channels=3)
# 512→256→classes if classes ≤ 50, else 512→classes (CIFAR ResNets, and the MS-ResNets on ImageNet)
HIDDEN_256_UP_TO_50_CLASSES_HEAD = Head(hidden=(256,), hidden_up_to_classes=50)
IMAGENET_STEM = ConvUnit(64, kernel=7, stride=2, padding=1)


def resnet18() -> NetworkSpec:
    """ResNet-18 for CIFAR: no max-pool, BasicBlocks [2, 2, 2, 2]."""
    return NetworkSpec(
        name="resnet18", input=CIFAR_IMAGE,
        stem=ConvUnit(64, kernel=3),
        body=stages("basic", depths=(2, 2, 2, 2), widths=(64, 128, 256, 512), strides=(1, 1, 2, 2)),
        head=HIDDEN_256_UP_TO_50_CLASSES_HEAD)


def resnet19() -> NetworkSpec:
    """ResNet-19 for CIFAR: BasicBlocks [3, 3, 2]."""
    return NetworkSpec(
        name="resnet19", input=CIFAR_IMAGE,
        stem=ConvUnit(128, kernel=3),
        body=stages("basic", depths=(3, 3, 2), widths=(128, 256, 512), strides=(1, 2, 2)),
        head=HIDDEN_256_UP_TO_50_CLASSES_HEAD)


def cifarnet() -> NetworkSpec:
    """CIFARNet: five conv units with two average poolings, then a 3-layer linear head."""
    return NetworkSpec(
        name="cifarnet", input=InputSpec("image", channels=3, size=(32, 32)),
        stem=ConvUnit(128),
        body=(ConvUnit(256), AvgPool(2), ConvUnit(512), AvgPool(2), ConvUnit(1024), ConvUnit(512)),
        reduction="flatten",
        head=Head(hidden=(1024, 512)))


def resnet34() -> NetworkSpec:
    """ResNet-34 for ImageNet: 7×7/2 stem, BasicBlocks [3, 4, 6, 3], all stages stride 2."""
    return NetworkSpec(
        name="resnet34", input=IMAGENET_IMAGE,
        stem=IMAGENET_STEM,
        body=stages("basic", depths=(3, 4, 6, 3), widths=(64, 128, 256, 512), strides=(2, 2, 2, 2)),
        head=Head())


def ms_resnet18() -> NetworkSpec:
    """MS-ResNet-18 for ImageNet: membrane-shortcut blocks [2, 2, 2, 2]."""
    return NetworkSpec(
        name="ms_resnet18", input=IMAGENET_IMAGE,
        stem=IMAGENET_STEM,
        body=stages("ms", depths=(2, 2, 2, 2), widths=(64, 128, 256, 512), strides=(2, 2, 2, 2)),
        head=HIDDEN_256_UP_TO_50_CLASSES_HEAD)


def ms_resnet34() -> NetworkSpec:
    """MS-ResNet-34 for ImageNet: membrane-shortcut blocks [3, 4, 6, 3]."""
    return NetworkSpec(
        name="ms_resnet34", input=IMAGENET_IMAGE,
        stem=IMAGENET_STEM,
        body=stages("ms", depths=(3, 4, 6, 3), widths=(64, 128, 256, 512), strides=(2, 2, 2, 2)),
        head=HIDDEN_256_UP_TO_50_CLASSES_HEAD)


def wide7b(width_change: Literal["3x3", "1x1"] = "3x3",
           connection: Literal["ADD", "AND", "IAND"] = "ADD") -> NetworkSpec:
    """7B-wideNet for CIFAR10-DVS (2×48×48 frames), plain BatchNorm, SEW blocks.

    width_change: kernel of the two convs that change the width (2→64, 64→128): "3x3" as
      the paper's text describes, or "1x1" as the authors' code has it.
    connection: how a SEW block joins its output to its input.
    """
    kernels = {"3x3": 3, "1x1": 1}
    kernel = kernels[check_choice("width_change", width_change, tuple(kernels))]
    check_choice("connection", connection, SEW_CONNECTIONS)
    return NetworkSpec(
        name="wide7b", input=InputSpec("frames", channels=2, size=(48, 48)),
        stem=ConvUnit(64, kernel=kernel),
        body=(Stage("sew", 4, 64, connection=connection), AvgPool(2),
              ConvUnit(128, kernel=kernel))
             + (Stage("sew", 1, 128, connection=connection), AvgPool(2)) * 3,
        reduction="flatten",
        head=Head(bias=True),
        norm="batchnorm")


def tiny_convnet() -> NetworkSpec:
    """A small network for the embedded default (sklearn digits, 8×8×1): trains in seconds on a CPU."""
    return NetworkSpec(
        name="tiny_convnet", input=InputSpec("image", channels=1),
        stem=ConvUnit(16),
        body=(ConvUnit(32, stride=2),),
        head=Head())

"""The vocabulary of declarative network descriptions (the paper's architectures).

A :class:`NetworkSpec` lists what a paper's architecture table lists: the input, the stem,
a body made of conv units, residual stages and poolings, how the feature map is reduced,
and the classifier head. :mod:`glif_jax.models.builder` turns any such description into a
Flax module; :mod:`glif_jax.models.specs` holds the paper's networks written in it.
:func:`scale_widths` makes a narrower (or wider) variant of any description.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Literal, Union

from glif_jax.errors import OptionError

BLOCK_KINDS = ("basic", "ms", "sew")
SEW_CONNECTIONS = ("ADD", "AND", "IAND")
NORMS = ("tdbn", "batchnorm")
REDUCTIONS = ("global_average", "flatten")


EXAMPLE_SIZE = (32, 32)
"""(H, W) of an example input for an architecture that takes any size (only used to trace it)."""


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What the network accepts.

    kind: ``"image"`` — static images ``[B, H, W, C]``, repeated over time (direct encoding);
      ``"frames"`` — event frames ``[B, T, H, W, C]`` with T equal to the model's time steps.
    channels: C.
    size: the (H, W) the architecture needs (a flattening head fixes it), or None for any.
    """

    kind: Literal["image", "frames"]
    channels: int
    size: tuple[int, int] | None = None

    def __post_init__(self):
        if self.kind not in ("image", "frames"):
            raise ValueError(f"InputSpec.kind: expected 'image' or 'frames', got {self.kind!r}")

    def expected_shape(self, time_steps: int | None = None) -> str:
        """Human-readable expected shape, e.g. ``[B, 32, 32, 3]`` or ``[B, T=16, 48, 48, 2]``."""
        height, width = self.size if self.size else ("H", "W")
        time = "" if self.kind == "image" else ("T, " if time_steps is None else f"T={time_steps}, ")
        return f"[B, {time}{height}, {width}, {self.channels}]"

    def example_shape(self, time_steps: int, batch: int = 1) -> tuple[int, ...]:
        """The shape of a batch the network accepts (e.g. to trace it); an architecture that
        takes any size gets :data:`EXAMPLE_SIZE`."""
        height, width = self.size or EXAMPLE_SIZE
        time = (time_steps,) if self.kind == "frames" else ()
        return (batch, *time, height, width, self.channels)


@dataclasses.dataclass(frozen=True)
class ConvUnit:
    """conv(kernel, stride, padding) → BN → GLIF, producing ``features`` channels.

    padding None means ``kernel // 2`` ("same" for odd kernels at stride 1).
    """

    features: int
    kernel: int = 3
    stride: int = 1
    padding: int | None = None

    @property
    def pad(self) -> int:
        return self.kernel // 2 if self.padding is None else self.padding


@dataclasses.dataclass(frozen=True)
class Stage:
    """``depth`` residual blocks of one kind with ``features`` output channels.

    The first block has stride ``stride`` (and changes the width if needed); the others
    stride 1. ``connection`` is the SEW block's ADD / AND / IAND (ignored by other kinds).
    """

    block: Literal["basic", "ms", "sew"]
    depth: int
    features: int
    stride: int = 1
    connection: Literal["ADD", "AND", "IAND"] = "ADD"

    def __post_init__(self):
        if self.block not in BLOCK_KINDS:
            raise ValueError(f"Stage.block: expected one of {BLOCK_KINDS}, got {self.block!r}")
        if self.connection not in SEW_CONNECTIONS:
            raise ValueError(f"Stage.connection: expected one of {SEW_CONNECTIONS}, got {self.connection!r}")
        if self.block == "sew" and self.stride != 1:
            raise ValueError("Stage: SEW blocks keep the resolution (stride 1); add an AvgPool instead")


@dataclasses.dataclass(frozen=True)
class AvgPool:
    """Average pooling with a square window and equal stride."""

    window: int = 2


BodyItem = Union[ConvUnit, Stage, AvgPool]


@dataclasses.dataclass(frozen=True)
class Head:
    """Classifier: bias-free (unless ``bias``) linear layers with no neuron between them.

    hidden: widths of the linear layers before the last one.
    hidden_up_to_classes: if set, the hidden layers are used only when the number of
      classes is at most this (the paper's "Linear(512→256) → Linear(256→classes) when
      classes ≤ 50, Linear(512→classes) otherwise").
    """

    hidden: tuple[int, ...] = ()
    hidden_up_to_classes: int | None = None
    bias: bool = False

    def widths(self, num_classes: int) -> tuple[int, ...]:
        """Output widths of the head's linear layers, the last being ``num_classes``."""
        use_hidden = self.hidden_up_to_classes is None or num_classes <= self.hidden_up_to_classes
        return (self.hidden if use_hidden else ()) + (num_classes,)


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """A whole network: input → stem → body → reduction → head → time average.

    norm: ``"tdbn"`` (the paper's tdBN and time-merging conventions) or ``"batchnorm"`` (plain, k · V = 1) for every BN.
    reduction: ``"global_average"`` over space, or ``"flatten"`` (needs ``input.size``).
    """

    name: str
    input: InputSpec
    stem: ConvUnit
    body: tuple[BodyItem, ...]
    head: Head
    reduction: Literal["global_average", "flatten"] = "global_average"
    norm: Literal["tdbn", "batchnorm"] = "tdbn"

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"NetworkSpec.norm: expected one of {NORMS}, got {self.norm!r}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"NetworkSpec.reduction: expected one of {REDUCTIONS}, got {self.reduction!r}")
        if self.reduction == "flatten" and self.input.size is None:
            raise ValueError(f"NetworkSpec {self.name!r}: a flattening head needs a fixed input size")


def stages(block: Literal["basic", "ms", "sew"], depths: tuple[int, ...], widths: tuple[int, ...],
           strides: tuple[int, ...]) -> tuple[Stage, ...]:
    """Residual stages from the columns of an architecture table (one entry per stage)."""
    if not len(depths) == len(widths) == len(strides):
        raise ValueError(f"stages: depths {depths}, widths {widths} and strides {strides} differ in length")
    return tuple(Stage(block, depth, width, stride) for depth, width, stride in zip(depths, widths, strides))


def scaled_width(width: int, multiplier: float) -> int:
    """``width · multiplier`` rounded half up to an integer, at least 1."""
    return max(1, math.floor(width * multiplier + 0.5))


def scale_widths(spec: NetworkSpec, multiplier: float) -> NetworkSpec:
    """``spec`` with every conv width and every hidden head width times ``multiplier``.

    Widths are rounded half up and kept >= 1 (:func:`scaled_width`); the input channels,
    kernels, strides, depths and the number of classes are unchanged, and the residual
    shortcut rule (the paper's architectures) applies to the scaled widths. ``multiplier`` 1 returns ``spec``
    itself, so the paper's networks are untouched. E.g. ResNet-18 at 0.25 has widths
    16, 32, 64, 128 and the head 128→64→classes.
    """
    if (isinstance(multiplier, bool) or not isinstance(multiplier, numbers.Real)
            or not math.isfinite(multiplier) or multiplier <= 0):
        raise OptionError("width_multiplier", f"expected a finite number > 0, got {multiplier!r}")
    if multiplier == 1:
        return spec

    def scale(item: BodyItem) -> BodyItem:
        if isinstance(item, (ConvUnit, Stage)):
            return dataclasses.replace(item, features=scaled_width(item.features, multiplier))
        if isinstance(item, AvgPool):
            return item
        raise TypeError(f"scale_widths: unknown body item {item!r}")

    head = dataclasses.replace(spec.head, hidden=tuple(scaled_width(width, multiplier) for width in spec.head.hidden))
    return dataclasses.replace(spec, stem=scale(spec.stem), body=tuple(scale(item) for item in spec.body), head=head)

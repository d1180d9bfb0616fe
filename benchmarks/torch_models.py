"""The paper's networks in plain PyTorch, written the way the authors' code runs them.

The reference side of ``model_speed.py``. As in the authors' code, convolutions and batch
norms run with time merged into the batch (``[T·B, C, H, W]``, NCHW), every GLIF layer loops
over ``T`` in Python (``torch_glif.glif_loop``: the equations of the paper's Eq. 5–8, one step at a
time, with the rectangular surrogate), tdBN is a batch norm whose output is scaled by
``k · V`` (V = 0.5, k = 1/√2 before a residual sum), the head is linear layers without a
neuron, and the loss is the cross-entropy of the logits averaged over time. Initialisation:
convs Kaiming-normal (fan_out, ReLU gain), BN weight 1 / bias 0, linear weights N(0, 0.01),
GLIF logits as glif-jax's CIFAR / DVS presets.

The architecture is read from the same :class:`~glif_jax.models.description.NetworkSpec` that
glif-jax builds its Flax modules from, so both sides always run the same network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from glif_jax.layers.spiking import PRESETS, logit
from glif_jax.layers.tdbn import RESIDUAL_BRANCH_SCALE, TDBN_THRESHOLD
from glif_jax.models.description import AvgPool, ConvUnit, NetworkSpec, Stage
from glif_jax.optim import GATES, PRIMITIVES, WEIGHTS, group_of
from torch_glif import glif_loop


class TorchGLIF(nn.Module):
    """Channel-wise GLIF on ``[T·B, C, H, W]``: split time, loop over it, merge it back."""

    def __init__(self, channels: int, time_steps: int, preset: str, gate_range: float = 0.2):
        super().__init__()
        self.time_steps = time_steps
        values = PRESETS[preset]
        for name in ("alpha", "beta", "gamma"):
            self.register_parameter(name, nn.Parameter(torch.empty(channels).uniform_(-gate_range, gate_range)))
        for name in ("tau", "lam", "v_th", "v_re"):
            self.register_parameter(name, nn.Parameter(torch.full((channels,), logit(values[name]))))
        self.cond = nn.Parameter(torch.full((time_steps, channels), logit(values["cond"])))

    def forward(self, merged: torch.Tensor) -> torch.Tensor:
        inputs = merged.view(self.time_steps, -1, *merged.shape[1:])
        logits = dict(self.named_parameters())
        return glif_loop(inputs, logits).flatten(0, 1)


class TdBN(nn.BatchNorm2d):
    """Batch norm over ``[T·B, C, H, W]`` scaled by ``k · V`` (plain BN: ``k · V = 1``)."""

    def __init__(self, channels: int, factor: float):
        super().__init__(channels)
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight * self.factor, self.bias,
                            self.training, self.momentum, self.eps)


class Reference(nn.Module):
    """Shared makers: every layer of one network uses the same T, GLIF preset and norm."""

    def __init__(self, time_steps: int, preset: str, norm: str):
        super().__init__()
        self.time_steps, self.preset, self.norm = time_steps, preset, norm

    def conv_norm(self, cin: int, cout: int, kernel: int, stride: int, pad: int, k: float = 1.0) -> nn.Sequential:
        threshold = TDBN_THRESHOLD if self.norm == "tdbn" else 1.0
        return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, pad, bias=False), TdBN(cout, k * threshold))

    def neuron(self, channels: int) -> TorchGLIF:
        return TorchGLIF(channels, self.time_steps, self.preset)


class ConvNormNeuron(nn.Sequential):
    def __init__(self, maker: Reference, cin: int, unit: ConvUnit):
        super().__init__(*maker.conv_norm(cin, unit.features, unit.kernel, unit.stride, unit.pad),
                         maker.neuron(unit.features))


class ResidualBlock(nn.Module):
    """BasicBlock (``GLIF(body + shortcut)``) or MS block (``body + shortcut``, neurons first)."""

    def __init__(self, maker: Reference, kind: str, cin: int, cout: int, stride: int):
        super().__init__()
        self.kind = kind
        first, second = maker.conv_norm(cin, cout, 3, stride, 1), maker.conv_norm(cout, cout, 3, 1, 1, RESIDUAL_BRANCH_SCALE)
        if kind == "basic":
            self.body = nn.Sequential(first, maker.neuron(cout), second)
            self.out = maker.neuron(cout)
        else:
            self.body = nn.Sequential(maker.neuron(cin), first, maker.neuron(cout), second)
            self.out = nn.Identity()
        if cin == cout and stride == 1:
            self.shortcut = TdBN(cout, RESIDUAL_BRANCH_SCALE * TDBN_THRESHOLD)
        else:
            self.shortcut = maker.conv_norm(cin, cout, 1, stride, 0, RESIDUAL_BRANCH_SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x) + self.shortcut(x))


class SEWBlock(nn.Module):
    def __init__(self, maker: Reference, channels: int, connection: str):
        super().__init__()
        self.connection = connection
        self.body = nn.Sequential(ConvNormNeuron(maker, channels, ConvUnit(channels)),
                                  ConvNormNeuron(maker, channels, ConvUnit(channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.connection == "ADD":
            return out + x
        return out * x if self.connection == "AND" else (1 - out) * x


class SpikingNetwork(Reference):
    """``forward(x)``: images ``[B, C, H, W]`` (repeated over T) or frames ``[B, T, C, H, W]``;
    returns logits ``[B, classes]`` averaged over time."""

    def __init__(self, spec: NetworkSpec, num_classes: int, time_steps: int, preset: str):
        super().__init__(time_steps, preset, spec.norm)
        self.spec = spec
        layers = [ConvNormNeuron(self, spec.input.channels, spec.stem)]
        channels = spec.stem.features
        size = spec.input.size
        for item in spec.body:
            if isinstance(item, ConvUnit):
                layers.append(ConvNormNeuron(self, channels, item))
                channels = item.features
            elif isinstance(item, Stage):
                for index in range(item.depth):
                    if item.block == "sew":
                        layers.append(SEWBlock(self, item.features, item.connection))
                    else:
                        stride = item.stride if index == 0 else 1
                        layers.append(ResidualBlock(self, item.block, channels, item.features, stride))
                    channels = item.features
            elif isinstance(item, AvgPool):
                layers.append(nn.AvgPool2d(item.window))
                size = (size[0] // item.window, size[1] // item.window) if size else None
        self.body = nn.Sequential(*layers)
        features = channels if spec.reduction == "global_average" else channels * math.prod(size)
        widths = spec.head.widths(num_classes)
        self.head = nn.Sequential(*[nn.Linear(cin, cout, bias=spec.head.bias)
                                    for cin, cout in zip((features, *widths[:-1]), widths)])
        self._initialise()

    def _initialise(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.input.kind == "frames":
            merged = x.transpose(0, 1).flatten(0, 1)
        else:
            merged = x.unsqueeze(0).expand(self.time_steps, *x.shape).flatten(0, 1)
        features = self.body(merged)
        if self.spec.reduction == "global_average":
            features = features.mean((2, 3))
        else:
            features = features.flatten(1)
        logits = self.head(features)
        return logits.view(self.time_steps, -1, logits.shape[-1]).mean(0)


def paper_sgd(model: nn.Module, *, base_lr: float, weight_decay: float, gate_lr_scale: float) -> torch.optim.SGD:
    """``torch.optim.SGD`` (momentum 0.9) with the paper's three groups: weights (decayed),
    primitives and gates of the GLIF layers (no decay; gates at ``gate_lr_scale`` of the rate)."""
    neuron_groups = {id(parameter): group_of(name) for module in model.modules() if isinstance(module, TorchGLIF)
                     for name, parameter in module.named_parameters()}
    groups = {WEIGHTS: [], PRIMITIVES: [], GATES: []}
    for parameter in model.parameters():
        groups[neuron_groups.get(id(parameter), WEIGHTS)].append(parameter)
    return torch.optim.SGD([
        {"params": groups[WEIGHTS], "lr": base_lr, "weight_decay": weight_decay},
        {"params": groups[PRIMITIVES], "lr": base_lr, "weight_decay": 0.0},
        {"params": groups[GATES], "lr": base_lr * gate_lr_scale, "weight_decay": 0.0},
    ], lr=base_lr, momentum=0.9)

"""The PyTorch side of the neuron benchmark: spikingjelly's ``GatedLIFNode`` and a plain loop.

Needs the ``bench`` extra (torch; spikingjelly for ``GatedLIFNode`` only). Activations are time-major NCHW,
``[T, B, C, H, W]``, because spikingjelly keeps one gate per channel of dim 1 of each step;
parameters are the same logits as glif-jax's (``cond`` is ``[T, C]``, the others ``[C]``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

# glif-jax parameter name -> GatedLIFNode attribute
SPIKINGJELLY_NAMES = {
    "alpha": "alpha",
    "beta": "beta",
    "gamma": "gamma",
    "tau": "tau",
    "lam": "linear_decay",
    "v_th": "v_threshold",
    "v_re": "v_subreset",
    "cond": "conduct",
}


def spikingjelly_node(time_steps: int, channels: int, logits: dict[str, np.ndarray]) -> torch.nn.Module:
    """A channel-wise ``GatedLIFNode`` (rectangular surrogate of width 1) holding ``logits``."""
    from spikingjelly.activation_based import neuron as sj_neuron   # only where spikingjelly is installed
    from spikingjelly.activation_based import surrogate as sj_surrogate

    node = sj_neuron.GatedLIFNode(
        T=time_steps,
        inplane=channels,
        init_linear_decay=0.0625,
        surrogate_function=sj_surrogate.Rect(alpha=1.0),
    )
    with torch.no_grad():
        for name, attribute in SPIKINGJELLY_NAMES.items():
            getattr(node, attribute).copy_(torch.as_tensor(logits[name]))
    return node


class RectangularSpike(torch.autograd.Function):
    """``H(x)`` (fires on x > 0) forward; ``1[|x| < 1/2]`` as its derivative backward."""

    @staticmethod
    def forward(ctx, distance):
        ctx.save_for_backward(distance)
        return (distance > 0).to(distance.dtype)

    @staticmethod
    def backward(ctx, grad_spikes):
        (distance,) = ctx.saved_tensors
        return grad_spikes * (distance.abs() < 0.5).to(grad_spikes.dtype)


def glif_loop(inputs: torch.Tensor, logits: dict[str, torch.Tensor]) -> torch.Tensor:
    """The GLIF paper's neuron equations step by step, the terms in glif-jax's order; ``inputs`` ``[T, B, C, H, W]``."""
    per_channel = {name: torch.sigmoid(logits[name]).view(1, -1, 1, 1) for name in SPIKINGJELLY_NAMES if name != "cond"}
    a, b, g = per_channel["alpha"], per_channel["beta"], per_channel["gamma"]
    decay = 1 - a * (1 - per_channel["tau"])
    leak = (1 - a) * per_channel["lam"]
    soft_reset = (1 - g) * per_channel["v_re"]
    gains = 1 - b * (1 - torch.sigmoid(logits["cond"]).view(inputs.shape[0], 1, -1, 1, 1))
    membrane = torch.zeros_like(inputs[0])
    spike = torch.zeros_like(inputs[0])
    spikes = []
    for t in range(inputs.shape[0]):
        membrane = decay * membrane * (1 - g * spike) - leak + gains[t] * inputs[t] - soft_reset * spike
        spike = RectangularSpike.apply(membrane - per_channel["v_th"])
        spikes.append(spike)
    return torch.stack(spikes)


def to_nchw(array: np.ndarray) -> torch.Tensor:
    """``[T, B, H, W, C]`` (glif-jax) -> contiguous ``[T, B, C, H, W]`` (spikingjelly)."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 1, 4, 2, 3)))


def to_nhwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().numpy().transpose(0, 1, 3, 4, 2)


def benchmark_calls(
    framework: str,
    inputs: np.ndarray,
    grad_spikes: np.ndarray,
    logits: dict[str, np.ndarray],
    device: str = "cpu",
) -> tuple[Callable[[], object], Callable[[], object]]:
    """``(forward, forward_and_backward)`` closures for ``framework``, inputs NHWC as for JAX.

    framework: ``"spikingjelly"``, ``"torch loop"`` or ``"torch.compile"`` (of the loop).
    The forward runs under ``torch.no_grad``; the backward of ``sum(spikes * grad_spikes)``
    fills the gradients of the inputs and of all eight parameters. Tensors and parameters live
    on ``device`` (``"cpu"`` or ``"cuda"``); on a GPU each call waits for the device to finish.
    """
    x = to_nchw(inputs).to(device).requires_grad_(True)
    g = to_nchw(grad_spikes).to(device)
    if framework == "spikingjelly":
        node = spikingjelly_node(inputs.shape[0], inputs.shape[-1], logits).to(device)
        parameters = list(node.parameters())

        def spikes():
            node.reset()  # GatedLIFNode keeps its last membrane between calls
            return node(x)
    else:
        tensors = {name: torch.nn.Parameter(torch.as_tensor(value, device=device)) for name, value in logits.items()}
        parameters = list(tensors.values())
        loop = torch.compile(glif_loop) if framework == "torch.compile" else glif_loop

        def spikes():
            return loop(x, tensors)

    finish = synchronizer(device)

    def forward():
        with torch.no_grad():
            result = spikes()
        finish()
        return result

    def forward_and_backward():
        x.grad = None
        for parameter in parameters:
            parameter.grad = None
        torch.sum(spikes() * g).backward()
        finish()
        return x.grad

    return forward, forward_and_backward


def synchronizer(device: str) -> Callable[[], None]:
    """A call that waits for ``device``'s queued work (nothing to wait for on the CPU)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def copy_call(inputs: np.ndarray, device: str = "cpu") -> Callable[[], object]:
    """``copy_`` of one tensor the size of ``inputs`` into another on ``device`` (copy bandwidth)."""
    source = torch.from_numpy(inputs).to(device)
    destination = torch.empty(inputs.shape, device=device)
    finish = synchronizer(device)

    def copy():
        destination.copy_(source)
        finish()

    return copy


def spikingjelly_reference(
    inputs: np.ndarray, grad_spikes: np.ndarray, logits: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """spikingjelly's spikes and gradients of ``sum(spikes * grad_spikes)``, NHWC like glif-jax.

    Computes in the inputs' dtype (the logits are stored as float32 first). Returns
    ``spikes``, ``inputs`` (dL/dx) and one entry per parameter name (dL/dlogit).
    """
    x = to_nchw(inputs).requires_grad_(True)
    node = spikingjelly_node(inputs.shape[0], inputs.shape[-1], logits).to(x.dtype)
    spikes = node(x)
    torch.sum(spikes * to_nchw(grad_spikes)).backward()
    result = {"spikes": to_nhwc(spikes), "inputs": to_nhwc(x.grad)}
    for name, attribute in SPIKINGJELLY_NAMES.items():
        result[name] = getattr(node, attribute).grad.numpy().copy()
    return result

"""Per-group cosine-annealing learning rates (the paper's training recipe), PyTorch `CosineAnnealingLR` closed form.

lr(epoch) = peak_lr * (1 + cos(pi * epoch / period_epochs)) / 2   (eta_min = 0)

with `epoch = step // steps_per_epoch` when the schedule steps once per epoch (the authors'
choice), or the fractional `step / steps_per_epoch` when it steps every iteration. Past the
period the formula is followed as is, so the rate rises again (the CIFAR10-DVS recipe:
period 64 epochs over 200). Learning rates are per optimiser step (update), not per example.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax

from glif_jax.optim.groups import GATES, PRIMITIVES, WEIGHTS

STEP_PER = ("epoch", "step")


def cosine_annealing(
    peak_lr: float, *, period_epochs: float, steps_per_epoch: int, per: str = "epoch"
) -> optax.Schedule:
    """Schedule step -> learning rate; `period_epochs` is PyTorch's T_max, in epochs."""
    if peak_lr < 0:
        raise ValueError(f"peak_lr must be >= 0, got {peak_lr}")
    if not period_epochs > 0:
        raise ValueError(f"period_epochs (T_max) must be > 0 epochs, got {period_epochs}")
    if int(steps_per_epoch) != steps_per_epoch or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch}")
    if per not in STEP_PER:
        raise ValueError(f"per (step_schedule_per) must be one of {STEP_PER}, got {per!r}")
    steps_per_epoch = int(steps_per_epoch)

    def schedule(step: Any) -> jnp.ndarray:
        step = jnp.asarray(step)
        if per == "epoch":
            epoch = (step // steps_per_epoch).astype(jnp.float32)
        else:
            epoch = step.astype(jnp.float32) / steps_per_epoch
        return peak_lr * 0.5 * (1.0 + jnp.cos(jnp.pi * epoch / period_epochs))

    return schedule


def learning_rates(
    optim_config: Any, *, num_epochs: int, steps_per_epoch: int
) -> dict[str, optax.Schedule]:
    """One schedule per group ("weights", "primitives", "gates"), e.g. for logging.

    Peaks: base_lr, base_lr * primitive_lr_scale, base_lr * gate_lr_scale. The period is
    `optim_config.cosine_period_epochs`, or `num_epochs` when that is None.
    """
    if int(num_epochs) != num_epochs or num_epochs < 1:
        raise ValueError(f"num_epochs must be a positive integer, got {num_epochs}")
    for field in ("base_lr", "gate_lr_scale", "primitive_lr_scale"):
        if not getattr(optim_config, field) >= 0:
            raise ValueError(f"optim.{field} must be >= 0, got {getattr(optim_config, field)}")
    period = optim_config.cosine_period_epochs
    period = num_epochs if period is None else period
    peaks = {
        WEIGHTS: optim_config.base_lr,
        PRIMITIVES: optim_config.base_lr * optim_config.primitive_lr_scale,
        GATES: optim_config.base_lr * optim_config.gate_lr_scale,
    }
    return {
        group: cosine_annealing(
            peak,
            period_epochs=period,
            steps_per_epoch=steps_per_epoch,
            per=optim_config.step_schedule_per,
        )
        for group, peak in peaks.items()
    }

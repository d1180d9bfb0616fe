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

from glif_jax.errors import check_choice, check_integer, check_number
from glif_jax.optim.groups import GATES, PRIMITIVES, WEIGHTS
from glif_jax.optim.options import STEP_PER, OptimizerOptions


def cosine_annealing(
    peak_lr: float, *, period_epochs: float, steps_per_epoch: int, per: str = "epoch"
) -> optax.Schedule:
    """Schedule step -> learning rate; `period_epochs` is PyTorch's T_max, in epochs."""
    check_number("peak_lr", peak_lr, minimum=0.0)
    check_number("period_epochs", period_epochs, minimum=0.0, inclusive=False)
    steps_per_epoch = _positive_integer("steps_per_epoch", steps_per_epoch)
    check_choice("per", per, STEP_PER)

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

    `optim_config`: an `OptimizerOptions`, or `config.optim` to read as one. Peaks: base_lr,
    base_lr * primitive_lr_scale, base_lr * gate_lr_scale. The period is
    `cosine_period_epochs`, or `num_epochs` when that is None.
    """
    options = OptimizerOptions.from_config(optim_config)
    num_epochs = _positive_integer("num_epochs", num_epochs)
    period = num_epochs if options.cosine_period_epochs is None else options.cosine_period_epochs
    peaks = {
        WEIGHTS: options.base_lr,
        PRIMITIVES: options.base_lr * options.primitive_lr_scale,
        GATES: options.base_lr * options.gate_lr_scale,
    }
    return {
        group: cosine_annealing(
            peak,
            period_epochs=period,
            steps_per_epoch=steps_per_epoch,
            per=options.step_schedule_per,
        )
        for group, peak in peaks.items()
    }


def _positive_integer(option: str, value: Any) -> int:
    """``value`` as an int >= 1; a whole float (e.g. ``200.0``) counts."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return check_integer(option, value, minimum=1)

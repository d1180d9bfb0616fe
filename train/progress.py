"""The progress bar of a training epoch: loss, top-1 accuracy and throughput (tqdm).

Shown on process 0 only, and only when stderr is a terminal (tqdm's own rule), so logs
of batch jobs stay clean; the loop logs the same numbers every ``log_every_steps``.
"""

from __future__ import annotations

import jax
from tqdm.auto import tqdm


def epoch_progress(epoch: int, num_epochs: int, steps_per_epoch: int, initial: int = 0) -> tqdm:
    """A bar over the steps of one epoch (``initial`` steps already done when resuming)."""
    return tqdm(
        total=steps_per_epoch,
        initial=initial,
        desc=f"epoch {epoch + 1}/{num_epochs}",
        unit="step",
        dynamic_ncols=True,
        leave=False,
        disable=None if jax.process_index() == 0 else True,
    )


def show_train_metrics(bar: tqdm, *, loss: float, top1: float, images_per_second: float) -> None:
    """Updates the bar's postfix: ``loss=… top1=…% img/s=…``."""
    bar.set_postfix(
        {"loss": f"{loss:.4f}", "top1": f"{100 * top1:.2f}%", "img/s": f"{images_per_second:.0f}"},
        refresh=False,
    )

"""The pure train and eval steps (compiled by a ``glif_jax.parallel`` strategy).

Both take ``(state, batch)`` and static keyword arguments (bind them with
``functools.partial`` before compiling). ``batch`` is ``{"image": [B, ...] float32,
"label": [B] int32}``; eval batches may add ``"mask": [B]`` (1 = real example, 0 = padding).

Both return metric *sums* over the batch (``loss``, ``top1``, ``top5``, ``count``, and
``spikes/<layer>/...`` when asked), summed over devices by ``collectives``;
divide by ``count`` on the host (``glif_jax.train.metrics.MeanAccumulator``). The train step adds
``nonfinite`` (:data:`NONFINITE`): 1 when its loss (with ``skip_nonfinite``, also a
gradient) was not finite, else 0 — read on the host with the other sums, so watching for
divergence costs no extra sync. (Without skipping, a non-finite gradient under a finite loss
makes the next step's loss non-finite.)

``collectives`` (a ``glif_jax.parallel.Collectives``, the strategy's) say how values agree
across devices: under ``pmap`` the gradients and the new batch statistics are averaged over
the device axis before the update (the statistics are already equal when the model averages
tdBN statistics over the same axis; this keeps replicas identical otherwise) and the metric
sums are summed; for one device or a ``Mesh`` program they are the identity.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from glif_jax.analysis.spikes import spike_metrics
from glif_jax.parallel import LOCAL, Collectives
from glif_jax.train import metrics as metrics_lib
from glif_jax.train.state import TrainState

Batch = dict[str, jax.Array]

NONFINITE = "nonfinite"


def _variables(state: TrainState, params: Any) -> dict[str, Any]:
    variables = {"params": params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    collectives: Collectives = LOCAL,
    spike_stats: bool = False,
    skip_nonfinite: bool = False,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step on the mean cross-entropy of the time-averaged logits.

    The model runs in train mode (tdBN on batch statistics, running statistics updated).
    Its compute dtype is the model's own (bfloat16 under ``half_precision``); the logits,
    the loss and the gradients of the float32 parameters are float32. Train batches are
    full (no padding): a "mask" entry, if present, is ignored.

    ``skip_nonfinite``: when the loss or a gradient is not finite, keep the parameters,
    batch statistics and optimizer state as they were (only ``step`` advances) and return
    zero metric sums for the step; ``sums["nonfinite"]`` says which steps were skipped.
    """
    step_rng = jax.random.fold_in(state.rng, state.step)
    mutable = ["batch_stats", "spike_stats"] if spike_stats else ["batch_stats"]

    def loss_fn(params):
        logits, updates = model.apply(
            _variables(state, params),
            batch["image"],
            train=True,
            mutable=mutable,
            rngs={"dropout": step_rng},
        )
        logits = logits.astype(jnp.float32)
        loss = jnp.mean(metrics_lib.cross_entropy(logits, batch["label"]))
        return loss, (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = collectives.mean(grads)
    batch_stats = collectives.mean(updates.get("batch_stats", state.batch_stats))

    finite = jnp.isfinite(loss)
    if skip_nonfinite:   # a finite loss can still have an overflowing gradient: never apply one
        finite &= jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    finite = collectives.all(finite)   # the loss is per device: skip or stop on every device alike

    param_updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, param_updates),
        batch_stats=batch_stats,
        opt_state=opt_state,
    )

    sums = metrics_lib.batch_sums(logits, batch["label"])
    if spike_stats:
        sums.update(_spike_sums(updates, sums["count"]))
    if skip_nonfinite:
        new_state = new_state.replace(**{
            field: jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                                getattr(new_state, field), getattr(state, field))
            for field in ("params", "batch_stats", "opt_state")
        })
        sums = jax.tree.map(lambda value: jnp.where(finite, value, jnp.zeros_like(value)), sums)
    sums = collectives.sum(sums)
    sums[NONFINITE] = 1.0 - finite.astype(jnp.float32)
    return new_state, sums


def eval_step(
    state: TrainState,
    batch: Batch,
    *,
    model: nn.Module,
    collectives: Collectives = LOCAL,
    spike_stats: bool = False,
) -> dict[str, jax.Array]:
    """Metric sums of the model in eval mode (tdBN on running statistics), padding masked.

    With ``spike_stats`` the firing statistics of every GLIF layer are added; the zero
    images that pad a last partial batch count in that batch's rates.
    """
    variables = _variables(state, state.params)
    if spike_stats:
        logits, updates = model.apply(variables, batch["image"], train=False, mutable=["spike_stats"])
    else:
        logits, updates = model.apply(variables, batch["image"], train=False), {}
    sums = metrics_lib.batch_sums(logits.astype(jnp.float32), batch["label"], batch.get("mask"))
    sums.update(_spike_sums(updates, sums["count"]))
    return collectives.sum(sums)


def _spike_sums(updates: dict, count: jax.Array) -> dict[str, jax.Array]:
    """Per-layer spike statistics (``spikes/<layer>/...``) weighted by the batch's example count."""
    return {name: value * count for name, value in spike_metrics(updates.get("spike_stats", {})).items()}

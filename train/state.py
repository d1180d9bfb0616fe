"""The train state: everything a step changes, and nothing else (a pytree of arrays).

The model's ``apply`` and the optax transformation are not stored here; the step
functions receive them as static arguments. This keeps the state a plain pytree that
checkpoints, replicates and shards without special cases.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """step: int32 scalar (optimizer updates done); params / batch_stats: the model's
    "params" and "batch_stats" collections ({} when the model has no batch norm);
    opt_state: the optax state; rng: a raw uint32[2] PRNG key, folded with ``step`` to
    get each step's randomness (so a resumed run draws the same numbers)."""

    step: jax.Array
    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree
    rng: jax.Array


def create_train_state(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    *,
    rng: jax.Array,
    input_shape: tuple[int, ...],
) -> TrainState:
    """Initialises the model on one dummy example of ``input_shape`` (no batch axis).

    ``rng`` is split into the parameter-init key and the state's own key.
    """
    init_rng, state_rng = jax.random.split(rng)

    @jax.jit
    def init(init_rng):
        dummy = jnp.zeros((1, *input_shape), jnp.float32)
        variables = model.init({"params": init_rng, "dropout": init_rng}, dummy, train=False)
        params = variables["params"]
        return params, variables.get("batch_stats", {}), optimizer.init(params)

    params, batch_stats, opt_state = init(init_rng)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=opt_state,
        rng=state_rng,
    )

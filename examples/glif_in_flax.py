"""A GLIF layer inside your own Flax model, trained with optax on scikit-learn's digits.

The network is the usual spiking pattern of GLIF's paper, written by hand from the pieces in
``glif_jax.layers``:

    image --repeat over T--> conv --> tdBN --> GLIF --> avg-pool --> dense --> mean over T --> logits

- Direct encoding (``repeat_over_time``): the static image is the input at every time step,
  so activations are ``[T, B, H, W, C]``, time first.
- Convolution, pooling and the dense readout hold no state across time; ``time_merged`` runs
  them once on ``[T*B, ...]`` and splits time back out.
- ``TdBatchNorm`` normalises over time, batch and space together (tdBN, with its constant
  threshold V = 0.5), keeping running statistics in the ``batch_stats`` collection.
- ``GLIF`` owns the neuron's eight learnable parameters per channel (gates alpha, beta, gamma;
  primitives tau, lam, v_th, v_re, cond) and turns the normalised input into spikes.
- The readout averages the logits over time (``mean_over_time``); the loss is cross-entropy
  on that average.

    python examples/glif_in_flax.py --steps 300
"""

from __future__ import annotations

import argparse
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from glif_jax import NeuronConfig
from glif_jax.layers import GLIF, TdBatchNorm, mean_over_time, neuron_values, repeat_over_time, time_merged


class SpikingDigitNet(nn.Module):
    """conv -> tdBN -> GLIF -> avg-pool -> dense, averaged over ``time_steps``; images ``[B, H, W, C]``."""

    time_steps: int = 4
    features: int = 16
    num_classes: int = 10
    neuron: NeuronConfig = NeuronConfig()   # the paper's GLIF: soft gates, rectangular surrogate

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        x = repeat_over_time(images, self.time_steps)                        # [T, B, 8, 8, 1]
        x = time_merged(nn.Conv(self.features, (3, 3), use_bias=False), x)   # [T, B, 8, 8, F]
        x = TdBatchNorm()(x, use_running_average=not train)
        x = GLIF(neuron=self.neuron, neuron_init="cifar", name="glif")(x)    # spikes, same shape
        x = time_merged(lambda y: nn.avg_pool(y, (2, 2), strides=(2, 2)), x)  # [T, B, 4, 4, F]
        x = x.reshape(x.shape[:2] + (-1,))                                    # [T, B, 16 F]
        x = time_merged(nn.Dense(self.num_classes), x)                       # [T, B, classes]
        return mean_over_time(x)                                             # [B, classes]


class TrainState(NamedTuple):
    params: Any
    batch_stats: Any
    opt_state: Any


def load_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as float32 ``[N, 8, 8, 1]``, standardised with the train split's statistics."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype(np.int32), test_size=0.2, stratify=digits.target, random_state=seed)
    mean, std = x_train.mean(), x_train.std()
    return (x_train - mean) / std, (x_test - mean) / std, y_train, y_test


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--time-steps", type=int, default=4, help="T")
    parser.add_argument("--features", type=int, default=16, help="conv channels (= GLIF neurons per pixel)")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    x_train, x_test, y_train, y_test = load_data(args.seed)
    model = SpikingDigitNet(time_steps=args.time_steps, features=args.features)
    variables = model.init(jax.random.PRNGKey(args.seed), x_train[:1], train=False)
    optimizer = optax.adam(args.learning_rate)
    state = TrainState(variables["params"], variables["batch_stats"], optimizer.init(variables["params"]))

    @jax.jit
    def train_step(state: TrainState, images: jax.Array, labels: jax.Array):
        def loss_fn(params):
            # train=True: tdBN uses batch statistics and updates its running ones (mutable)
            logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                                          images, train=True, mutable=["batch_stats"])
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, (logits, updates["batch_stats"])

        (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
        return TrainState(optax.apply_updates(state.params, updates), batch_stats, opt_state), loss, accuracy

    @jax.jit
    def evaluate(state: TrainState, images: jax.Array, labels: jax.Array):
        # running statistics in tdBN; the "spike_stats" collection collects GLIF's firing rates
        logits, stats = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                                    images, train=False, mutable=["spike_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, jnp.mean(jnp.argmax(logits, -1) == labels), stats["spike_stats"]

    rng = np.random.default_rng(args.seed)
    order, position = rng.permutation(len(y_train)), 0
    first_loss = None
    for step in range(1, args.steps + 1):
        if position + args.batch_size > len(order):          # a new epoch: reshuffle
            order, position = rng.permutation(len(y_train)), 0
        batch = order[position:position + args.batch_size]
        position += args.batch_size
        state, loss, accuracy = train_step(state, x_train[batch], y_train[batch])
        first_loss = float(loss) if first_loss is None else first_loss
        if step % args.log_every == 0 or step == args.steps:
            print(f"step {step:4d}  train loss {float(loss):.4f}  train accuracy {float(accuracy):.3f}")

    test_loss, test_accuracy, spike_stats = evaluate(state, x_test, y_test)
    rates = spike_stats["glif"]["rates"]                      # [T, C]: mean spike per step and channel
    gates = neuron_values(state.params)["glif"]               # constrained values, all in (0, 1)
    print(f"GLIF firing rate per time step: {' '.join(f'{float(r):.3f}' for r in rates.mean(axis=1))}")
    print("GLIF gates (channel mean): " + ", ".join(
        f"{name} {float(gates[name].mean()):.3f}" for name in ("alpha", "beta", "gamma")))
    print(f"first train loss {first_loss:.4f}")
    print(f"test loss {float(test_loss):.4f}  test accuracy {float(test_accuracy):.4f} on {len(y_test)} digits")
    return {"first_loss": first_loss, "test_loss": float(test_loss), "test_accuracy": float(test_accuracy)}


if __name__ == "__main__":
    main()

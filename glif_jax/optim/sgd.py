"""SGD with PyTorch semantics and the paper's three-group optimiser (the paper's training recipe).

PyTorch `torch.optim.SGD` (dampening 0), per step, per parameter p with gradient g:
    g   <- g + weight_decay * p                 (decay added to the gradient, before momentum)
    buf <- momentum * buf + g                   (first step: buf = g; optax.trace starts at 0)
    d   <- g + momentum * buf if nesterov else buf
    p   <- p - lr * d                           (lr applied last: changing it never rescales buf)
"""

from __future__ import annotations

import functools
from typing import Any, Collection

import optax

from glif_jax.optim.groups import GATES, PRIMITIVES, WEIGHTS, param_labels
from glif_jax.optim.options import OptimizerOptions, check_sgd
from glif_jax.optim.schedules import learning_rates


def torch_sgd(
    learning_rate: optax.ScalarOrSchedule,
    *,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    """`torch.optim.SGD` as an optax transformation; `learning_rate` per step (or a schedule)."""
    check_sgd(momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    return optax.chain(
        optax.add_decayed_weights(weight_decay) if weight_decay else optax.identity(),
        optax.trace(decay=momentum, nesterov=nesterov) if momentum else optax.identity(),
        optax.scale_by_learning_rate(learning_rate),
    )


def make_optimizer(
    optim_config: Any, *, num_epochs: int, steps_per_epoch: int, neuron_scopes: Collection[str] | None = None,
    neuron: Any = None,
) -> optax.GradientTransformation:
    """The paper's optimiser: one `torch_sgd` per group, each with its own cosine schedule.

    `optim_config`: an `OptimizerOptions`, or `config.optim` to read as one.
    weights: weight_decay; primitives and gates: no weight decay (the paper's training recipe). The
    gates and primitives are the neuron layers' parameters that their neuron declares in those
    groups (`param_labels`, which finds the layers of `neuron` — default: any registered neuron —
    in the parameter tree unless `neuron_scopes` names them); schedules are those of
    `learning_rates`.
    """
    options = OptimizerOptions.from_config(optim_config)
    schedules = learning_rates(options, num_epochs=num_epochs, steps_per_epoch=steps_per_epoch)
    decays = {WEIGHTS: options.weight_decay, PRIMITIVES: 0.0, GATES: 0.0}
    transforms = {
        group: torch_sgd(
            schedules[group],
            momentum=options.momentum,
            weight_decay=decays[group],
            nesterov=options.nesterov,
        )
        for group in schedules
    }
    labels = functools.partial(param_labels, neuron_scopes=neuron_scopes, neuron=neuron)
    return optax.partition(transforms, labels)

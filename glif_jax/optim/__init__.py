"""The paper's optimiser: parameter groups, their cosine schedules, PyTorch-style SGD (the paper's training recipe)."""

from glif_jax.optim.groups import GATES, GROUPS, PRIMITIVES, WEIGHTS, group_of, param_labels
from glif_jax.optim.options import OptimizerOptions
from glif_jax.optim.schedules import cosine_annealing, learning_rates
from glif_jax.optim.sgd import make_optimizer, torch_sgd

__all__ = [
    "GATES", "GROUPS", "PRIMITIVES", "WEIGHTS", "group_of", "param_labels", "OptimizerOptions",
    "cosine_annealing", "learning_rates", "make_optimizer", "torch_sgd",
]

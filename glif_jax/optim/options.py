"""``config.optim`` read once and checked (:class:`OptimizerOptions`), and the rule of SGD's
arguments it shares with :func:`~glif_jax.optim.torch_sgd`."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from glif_jax.errors import OptionError, check_choice, check_flag, check_known, check_number

STEP_PER = ("epoch", "step")


@dataclasses.dataclass(frozen=True)
class OptimizerOptions:
    """The paper's optimiser: SGD per parameter group with cosine-annealed learning rates.

    base_lr: the weights' learning rate per optimiser step at epoch 0, >= 0.
    momentum: in [0, 1). weight_decay: >= 0, added to the weights' gradients only (gates and
      primitives get none). nesterov: Nesterov momentum (needs momentum > 0).
    gate_lr_scale, primitive_lr_scale: the gates' / primitives' peak learning rate as a
      multiple of ``base_lr``, >= 0.
    cosine_period_epochs: the cosine's period (PyTorch's ``T_max``) in epochs, > 0; None =
      the run's ``num_epochs``.
    step_schedule_per: ``"epoch"`` (the learning rate changes once per epoch, the authors'
      choice) or ``"step"`` (every optimiser step).

    Every field is checked on construction; a bad one raises
    :class:`~glif_jax.errors.OptionError` naming it.
    """

    base_lr: float
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    gate_lr_scale: float = 1.0
    primitive_lr_scale: float = 1.0
    cosine_period_epochs: float | None = None
    step_schedule_per: str = "epoch"

    def __post_init__(self):
        for option in ("base_lr", "gate_lr_scale", "primitive_lr_scale"):
            check_number(option, getattr(self, option), minimum=0.0)
        check_sgd(momentum=self.momentum, weight_decay=self.weight_decay, nesterov=self.nesterov)
        if self.cosine_period_epochs is not None:
            check_number("cosine_period_epochs", self.cosine_period_epochs, minimum=0.0, inclusive=False)
        check_choice("step_schedule_per", self.step_schedule_per, STEP_PER)

    @classmethod
    def from_config(cls, optim_config: Any) -> OptimizerOptions:
        """Reads ``config.optim``: a ConfigDict or mapping (an unknown key is an error), or any
        object with these fields as attributes; an ``OptimizerOptions`` is returned as is.

        Missing fields take the defaults above; ``base_lr`` is required.
        """
        if isinstance(optim_config, cls):
            return optim_config
        fields = [field.name for field in dataclasses.fields(cls)]
        if hasattr(optim_config, "to_dict"):
            optim_config = optim_config.to_dict()
        if isinstance(optim_config, Mapping):
            values = dict(optim_config)
            check_known(values, fields, "the optimiser")
        else:
            values = {field: getattr(optim_config, field) for field in fields if hasattr(optim_config, field)}
        if "base_lr" not in values:
            raise OptionError("base_lr", "required: the weights' learning rate per optimiser step, e.g. 0.1")
        return cls(**values)


def check_sgd(*, momentum: Any, weight_decay: Any, nesterov: Any) -> None:
    """The rules of ``torch.optim.SGD``'s arguments (dampening 0)."""
    check_number("momentum", momentum, minimum=0.0, maximum=1.0)
    check_number("weight_decay", weight_decay, minimum=0.0)
    if check_flag("nesterov", nesterov) and momentum == 0:
        raise OptionError("nesterov", "nesterov=True needs momentum > 0 (as in torch.optim.SGD)")

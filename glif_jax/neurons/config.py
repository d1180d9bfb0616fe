"""How a spiking layer computes: which neuron, its options, gate mode, surrogate, dtypes, implementation."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Mapping

import jax.numpy as jnp

from glif_jax import surrogate as surrogate_lib
from glif_jax.errors import OptionError, check_choice, check_flag, check_integer
from glif_jax.neurons import registry
from glif_jax.neurons.interface import Neuron, hashable

GATE_MODES = ("soft", "hard")
IMPLEMENTATIONS = ("auto", "kernel", "xla", "autodiff")
# earlier names of implementations, accepted with a DeprecationWarning
DEPRECATED_IMPLEMENTATIONS = {"fused": "xla"}


class Options(dict):
    """A neuron's options as a hashable mapping (so that a config is a static argument of jit);
    equal mappings hash equally (``{"v": 1}`` and ``{"v": 1.0}`` too)."""

    def __hash__(self) -> int:   # type: ignore[override]
        return hash(frozenset((key, hashable(value)) for key, value in self.items()))


def check_option(name: str, value: Any, default: Any) -> Any:
    """A neuron option's value checked against the type of its declared default (a flag for a
    bool, a number — or None — for a number, a string for a string; anything for a None default)."""
    if default is None:
        return value
    if isinstance(default, bool):
        return check_flag(f"options.{name}", value)
    if isinstance(default, (int, float)):
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return value
        raise OptionError(f"options.{name}", f"expected a number (or None), got {value!r}")
    if isinstance(default, str) and not isinstance(value, str):
        raise OptionError(f"options.{name}", f"expected a string, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class NeuronConfig:
    """How a spiking layer computes (hashable; safe as a jit-static argument).

    kind: the neuron: a registered name (``"glif"``, the paper's gated neuron; ``"glif_f"``, its
      coarsely fused ablation without gates; ``"lif"``, plain LIF with hard reset; ``"plif"``,
      parametric LIF; ``"alif"``, adaptive-threshold LIF; see ``glif_jax.neurons.names()``),
      ``"module.path:attribute"`` of a :class:`~glif_jax.neurons.Neuron`, or a Neuron.
    options: the neuron's own options (the keyword-only arguments of its step), e.g.
      ``{"decay_input": False}`` for PLIF; unset ones keep the neuron's defaults.
    gates: how parameters of the optimiser group ``"gates"`` are used: ``"soft"`` (their
      constrained value) or ``"hard"`` (``1[value > 0.5]`` forward, straight-through gradient).
    static_gates / static_primitives: stop the gradient to the neuron's parameters of group
      ``"gates"`` / ``"primitives"``.
    surrogate, surrogate_width: the spike's surrogate derivative (see :mod:`glif_jax.surrogate`).
    state_dtype: dtype of the neuron's state; ``None`` means float32 (float64 for float64 inputs).
    implementation: ``"auto"`` (a neuron's own fast path where it has one and it runs — GLIF's
      compiled CPU kernel when compiling for the CPU — else the library's scan), ``"xla"`` (the
      XLA scan: GLIF's with its hand-written backward through time, :mod:`glif_jax.xla_scan`;
      for other neurons the library's scan), ``"kernel"`` (the compiled CPU kernel; an error
      where it cannot run), or ``"autodiff"`` (plain autodiff through a scan of the step; also
      differentiable twice). ``"fused"``, the earlier name of ``"xla"``, still works and warns.
    unroll: ``jax.lax.scan`` unroll factor of the forward time loop (``True`` unrolls it whole);
      ``None`` picks by length: whole for ``T <= 8``, where XLA fuses the short loop into a few
      passes over memory, and a rolled loop (1) for longer ones.
    """

    kind: str | Neuron = "glif"
    gates: str = "soft"
    static_gates: bool = False
    static_primitives: bool = False
    surrogate: str | surrogate_lib.Surrogate = "rectangular"
    surrogate_width: float | None = None
    state_dtype: str | None = None
    implementation: str = "auto"
    unroll: int | bool | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=Options)
    # the resolved neuron: compared and hashed with the config, so that a neuron registered anew
    # under the same name is a different static argument of jit
    _neuron: Neuron | None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.implementation in DEPRECATED_IMPLEMENTATIONS:
            current = DEPRECATED_IMPLEMENTATIONS[self.implementation]
            warnings.warn(f"implementation={self.implementation!r} is deprecated; it is now called {current!r}",
                          DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "implementation", current)  # frozen: set once, here
        check_choice("gates", self.gates, GATE_MODES)
        check_choice("implementation", self.implementation, IMPLEMENTATIONS)
        check_flag("static_gates", self.static_gates)
        check_flag("static_primitives", self.static_primitives)
        surrogate_lib.get(self.surrogate, self.surrogate_width)  # validates name and width
        if self.state_dtype is not None and not _is_floating_dtype(self.state_dtype):
            raise OptionError("state_dtype", f"expected a floating dtype, got {self.state_dtype!r}")
        if self.unroll is not None and not isinstance(self.unroll, bool):
            check_integer("unroll", self.unroll, minimum=0)   # jax.lax.scan: 0 unrolls the whole loop
        options = self.options
        if hasattr(options, "to_dict"):   # a ConfigDict
            options = options.to_dict()
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise OptionError("options", f"expected a mapping of the neuron's options, got {options!r}")
        neuron = registry.get(self.kind)
        declared = neuron.default_options
        for name, value in options.items():
            if name not in declared:
                raise OptionError(f"options.{name}", f"neuron {neuron.name!r} has no option {name!r}; its options: "
                                                     f"{', '.join(declared) or 'none'}")
            check_option(name, value, declared[name])
        object.__setattr__(self, "options", Options(options))
        if self.implementation == "kernel" and neuron.fast_scan is None:
            raise OptionError("implementation", f"neuron {neuron.name!r} has no compiled kernel; "
                                                "use 'auto', 'xla' or 'autodiff'")
        object.__setattr__(self, "_neuron", neuron.with_options(**self.options))

    @property
    def neuron(self) -> Neuron:
        """The neuron this config names, with its options set."""
        return self._neuron

    @property
    def param_names(self) -> tuple[str, ...]:
        """The parameter names of this config's neuron."""
        return self.neuron.param_names

    @property
    def spike_function(self) -> surrogate_lib.Surrogate:
        return surrogate_lib.get(self.surrogate, self.surrogate_width)

    def state_dtype_for(self, inputs_dtype: Any) -> jnp.dtype:
        """The state dtype for inputs of ``inputs_dtype`` (see ``state_dtype``)."""
        if self.state_dtype is not None:
            return jnp.dtype(self.state_dtype)
        return jnp.promote_types(inputs_dtype, jnp.float32)


def _is_floating_dtype(name: Any) -> bool:
    try:
        return jnp.issubdtype(jnp.dtype(name), jnp.floating)
    except TypeError:
        return False


def make_config(config: NeuronConfig | None, options: dict) -> NeuronConfig:
    """``config`` with some fields replaced by keywords (a new default config when ``config`` is None)."""
    if config is None:
        return NeuronConfig(**options)
    if options:
        return dataclasses.replace(config, **options)
    return config

"""The public neuron interface: a spiking neuron is data plus one pure step function.

A :class:`Neuron` is

- a **step** ``(state, params, inputs_t, time_step) -> (state, spikes_t)``: one time step,
  pure, written with the library's spike (:func:`glif_jax.neurons.spike`), ``params`` the
  *constrained* values (what the equations use), ``inputs_t`` one time step ``[..., C]``,
  ``time_step`` the step's index (a traced integer: it picks the row of a per-time-step
  parameter); the neuron's own options are its keyword-only arguments with defaults;
- its **parameters** (:class:`Parameter`): name, shape rule (per channel or per layer, with or
  without a leading time axis), initial value, the constraint that maps the stored raw value to
  the value the step uses, and the optimiser group it belongs to;
- its **initial state** ``initial_state(shape, dtype) -> state`` for one time step's ``shape``
  (any pytree of arrays; default: :class:`MembraneState` of zeros).

The library supplies the rest (:mod:`glif_jax.neurons.loop`): the scan over time, a backward
pass that keeps only each step's state and recomputes the step, channel- or layer-wise
parameters, dtypes, checks with clear errors, the Flax layer, optimiser groups and analysis.
No Flax here: a researcher can import this alone.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

GROUPS = ("gates", "primitives", "weights")
"""Optimiser groups a neuron parameter may belong to (the paper's recipe: gates and primitives
have their own schedules and no weight decay; "weights" are treated like conv/linear weights)."""

BACKWARDS = ("remat", "autodiff")


@dataclasses.dataclass(frozen=True)
class Constraint:
    """Maps a stored raw parameter to the value a step uses, and a value back (for initialisation)."""

    name: str
    forward: Callable[[jax.Array], jax.Array]
    inverse: Callable[[float], float]
    scalar: Callable[[float], float]   # ``forward`` of a Python float, in double precision
    low: float = -math.inf    # the values' open range, for error messages and initial values
    high: float = math.inf

    def __call__(self, raw: jax.Array) -> jax.Array:
        return self.forward(raw)


def logit(value: float) -> float:
    """Inverse of the sigmoid: the stored value for a value in (0, 1)."""
    return math.log(value / (1 - value))


def _inverse_softplus(value: float) -> float:
    return value + math.log(-math.expm1(-value))


def _sigmoid(raw: float) -> float:
    return 1.0 / (1.0 + math.exp(-raw))


CONSTRAINTS: dict[str, Constraint] = {
    "sigmoid": Constraint("sigmoid", jax.nn.sigmoid, logit, _sigmoid, 0.0, 1.0),
    "identity": Constraint("identity", lambda raw: raw, float, float),
    "softplus": Constraint("softplus", jax.nn.softplus, _inverse_softplus, lambda raw: math.log1p(math.exp(raw)), 0.0),
    "exp": Constraint("exp", jnp.exp, math.log, math.exp, 0.0),
}


@dataclasses.dataclass(frozen=True)
class Uniform:
    """Raw values drawn independently per entry from ``U[low, high)`` (before the constraint)."""

    low: float
    high: float

    def __post_init__(self):
        if not self.low < self.high:
            raise ValueError(f"Uniform: expected low < high, got [{self.low}, {self.high})")


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One learnable parameter of a neuron.

    name: the key under which a layer stores it (a valid Python identifier).
    init: the value the step starts with (after the constraint; stored as the constraint's
      inverse), or :class:`Uniform` raw values.
    constraint: ``"sigmoid"`` (values in (0, 1); the default, as every GLIF parameter),
      ``"identity"``, ``"softplus"`` or ``"exp"`` (values > 0).
    group: the optimiser group, one of :data:`GROUPS` (default ``"primitives"``: the neuron's
      schedule, no weight decay).
    per_channel: one value per channel in a channel-wise layer (else always one per layer).
    per_time_step: a leading time axis (``[T]`` or ``[T, C]``); the step picks its row with
      ``time_step``.
    symbol, math, meaning: how figures and tables name it (plain text, matplotlib mathtext,
      one line of meaning); default: the name.
    """

    name: str
    init: float | Uniform
    constraint: str = "sigmoid"
    group: str = "primitives"
    per_channel: bool = True
    per_time_step: bool = False
    symbol: str = ""
    math: str = ""
    meaning: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"Parameter: name must be an identifier, got {self.name!r}")
        if self.constraint not in CONSTRAINTS:
            raise ValueError(f"Parameter {self.name!r}: constraint must be one of {sorted(CONSTRAINTS)}, "
                             f"got {self.constraint!r}")
        if self.group not in GROUPS:
            raise ValueError(f"Parameter {self.name!r}: group must be one of {GROUPS}, got {self.group!r}")
        if self.group == "gates" and self.constraint != "sigmoid":
            raise ValueError(f"Parameter {self.name!r}: a gate is a value in (0, 1) (hard gates use 1[value > 0.5]): "
                             f"its constraint must be 'sigmoid', got {self.constraint!r}")
        if not isinstance(self.init, Uniform):
            self.raw_value(self.init)   # an initial value outside the constraint's range fails here

    @property
    def constrain(self) -> Constraint:
        return CONSTRAINTS[self.constraint]

    @property
    def label(self) -> str:
        """Plain-text symbol for figures and tables."""
        return self.symbol or self.name

    @property
    def math_label(self) -> str:
        return self.math or self.label

    def raw_value(self, value: float) -> float:
        """The stored raw value for the value ``value`` the step should use."""
        constraint = self.constrain
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not constraint.low < value < constraint.high:
            raise ValueError(f"parameter {self.name!r}: initial value {value!r} is outside the values of its "
                             f"{constraint.name} constraint ({constraint.low}, {constraint.high})")
        return float(constraint.inverse(float(value)))

    def shape(self, channels: int | None, time_steps: int) -> tuple[int, ...]:
        """The stored shape: ``[T]`` if per time step, then ``[C]`` if per channel (``channels`` not None)."""
        return ((time_steps,) if self.per_time_step else ()) + (
            (channels,) if self.per_channel and channels is not None else ())

    def initializer(self, value: float | None = None) -> Callable[..., jax.Array]:
        """A Flax-style initializer ``(key, shape, dtype) -> raw`` (``value`` overrides a constant init)."""
        init = self.init if value is None else value
        if isinstance(init, Uniform):
            def uniform(key, shape, dtype=jnp.float32):
                return jax.random.uniform(key, shape, dtype, init.low, init.high)
            return uniform
        raw = self.raw_value(init)

        def constant(key, shape, dtype=jnp.float32):
            del key
            return jnp.full(shape, raw, dtype)
        return constant


class MembraneState(NamedTuple):
    """The state most neurons carry: ``membrane`` (u) and last ``spike`` (o), each one step's ``[..., C]``."""

    membrane: jax.Array
    spike: jax.Array


def zero_state(shape: tuple[int, ...], dtype: Any = jnp.float32) -> MembraneState:
    """Zero membrane and no spike (the default initial state)."""
    return MembraneState(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


def _keyword_options(function: Callable) -> dict[str, Any]:
    """The keyword-only arguments of ``function`` with their defaults (a neuron's own options)."""
    options = {}
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            if parameter.default is inspect.Parameter.empty:
                raise TypeError(f"{function.__qualname__}: keyword-only argument {parameter.name!r} needs a default "
                                "(a neuron's options are keyword-only arguments with defaults)")
            options[parameter.name] = parameter.default
    return options


@dataclasses.dataclass(frozen=True, eq=False)
class Neuron:
    """A spiking neuron: a pure step function, its parameters, its initial state (see the module doc).

    name: the registered name (``glif_jax.neurons.register``) or any label.
    step: ``(state, params, inputs_t, time_step, **options) -> (state, spikes_t)``.
    parameters: its :class:`Parameter` specifications (names unique).
    initial_state: ``(shape, dtype, **options) -> state``; default :func:`zero_state`.
    presets: named sets of initial values, ``{preset: {parameter: value}}``; a model's
      ``neuron_init`` names one (a preset this neuron lacks leaves its declared initial values).
    backward: ``"remat"`` (the default: the backward pass keeps each step's state and recomputes
      the step) or ``"autodiff"`` (plain autodiff through the scan, which keeps whatever the
      step's operations keep).
    fast_scan: an optional implementation of the whole time loop (e.g. a compiled kernel),
      ``fast_scan(values, inputs, initial, config, keep_states) -> (spikes, states) | None``;
      ``None`` falls back to the library's scan.
    options: the values of the step's keyword-only arguments (use :meth:`with_options`).
    description: one line for listings and errors.

    Neurons compare and hash by identity; :meth:`with_options` returns the same object for the
    same options, so that a neuron is a stable static argument of ``jax.jit``.
    """

    name: str
    step: Callable[..., tuple[Any, jax.Array]]
    parameters: tuple[Parameter, ...]
    initial_state: Callable[..., Any] = zero_state
    presets: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    backward: str = "remat"
    fast_scan: Callable[..., Any] | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""

    def __post_init__(self):
        if not callable(self.step):
            raise TypeError(f"neuron {self.name!r}: step must be callable, got {type(self.step).__name__}")
        object.__setattr__(self, "parameters", tuple(self.parameters))
        for parameter in self.parameters:
            if not isinstance(parameter, Parameter):
                raise TypeError(f"neuron {self.name!r}: parameters must be Parameter objects, got {parameter!r}")
        names = [parameter.name for parameter in self.parameters]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"neuron {self.name!r}: parameter names {duplicates} appear more than once")
        if self.backward not in BACKWARDS:
            raise ValueError(f"neuron {self.name!r}: backward must be one of {BACKWARDS}, got {self.backward!r}")
        declared = _keyword_options(self.step)
        unknown = sorted(set(self.options) - set(declared))
        if unknown:
            raise ValueError(f"neuron {self.name!r} has no option(s) {unknown}; its options: "
                             f"{', '.join(declared) or 'none'}")
        object.__setattr__(self, "options", {**declared, **self.options})
        for preset, values in self.presets.items():
            for name, value in values.items():
                self.parameter(name).raw_value(value)
        object.__setattr__(self, "_variants", {})
        object.__setattr__(self, "_root", self)

    # ---- what it is -------------------------------------------------------------------------
    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(parameter.name for parameter in self.parameters)

    @property
    def default_options(self) -> dict[str, Any]:
        """The step's keyword-only arguments with their declared defaults."""
        return _keyword_options(self.step)

    def parameter(self, name: str) -> Parameter:
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        raise KeyError(f"neuron {self.name!r} has no parameter {name!r}; its parameters: {', '.join(self.param_names)}")

    def groups(self) -> dict[str, str]:
        """``{parameter name: optimiser group}``."""
        return {parameter.name: parameter.group for parameter in self.parameters}

    def with_options(self, **options: Any) -> Neuron:
        """This neuron with some of its options set (the same object for the same options)."""
        merged = {**self.options, **options}
        root = self._root  # type: ignore[attr-defined]
        if merged == root.options:
            return root
        key = tuple(sorted((name, hashable(value)) for name, value in merged.items()))
        if key not in root._variants:
            variant = dataclasses.replace(root, options=merged)
            object.__setattr__(variant, "_root", root)
            root._variants[key] = variant
        return root._variants[key]

    # ---- what the loop calls ------------------------------------------------------------------
    def initial(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """The state before the first step for one time step's ``shape``."""
        accepted = _accepted_options(self.initial_state)
        return self.initial_state(shape, dtype, **{k: v for k, v in self.options.items() if k in accepted})

    def bound_step(self) -> Callable[..., tuple[Any, jax.Array]]:
        """``step`` with this neuron's options applied: ``(state, params, inputs_t, time_step)``."""
        return functools.partial(self.step, **self.options) if self.options else self.step

    def initial_values(self, neuron_init: Any = None) -> dict[str, float | Uniform]:
        """Each parameter's initial value for ``neuron_init``: ``None``, a preset name (a preset this
        neuron lacks leaves its declared values), or a mapping of the values of every parameter
        with a constant initial value (those with a :class:`Uniform` one may be given too)."""
        values = {parameter.name: parameter.init for parameter in self.parameters}
        if neuron_init is None:
            return values
        if isinstance(neuron_init, str):
            return {**values, **dict(self.presets.get(neuron_init, {}))}
        if hasattr(neuron_init, "to_dict"):   # a ConfigDict
            neuron_init = neuron_init.to_dict()
        if not isinstance(neuron_init, Mapping):
            raise TypeError(f"neuron_init: expected a preset name or a mapping, got {neuron_init!r}")
        constants = tuple(p.name for p in self.parameters if not isinstance(p.init, Uniform))
        missing = [name for name in constants if name not in neuron_init]
        unknown = [name for name in neuron_init if name not in values]
        if missing or unknown:
            raise ValueError(f"expected values for {constants} (neuron {self.name!r}); missing {missing}, "
                             f"unknown {unknown}")
        for name, value in neuron_init.items():
            self.parameter(name).raw_value(value)
        return {**values, **{name: float(value) for name, value in neuron_init.items()}}

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"Neuron({self.name!r}{', ' + options if options else ''})"


def _accepted_options(function: Callable) -> set[str] | frozenset:
    parameters = inspect.signature(function).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return _Everything()
    return {p.name for p in parameters if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                     inspect.Parameter.POSITIONAL_OR_KEYWORD)}


class _Everything(frozenset):
    def __contains__(self, item: object) -> bool:
        return True


def hashable(value: Any) -> Any:
    """``value`` if it hashes, else its ``repr`` (an option value as part of a cache key)."""
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)

"""Building a model: :func:`get_model` by name and arguments, or :meth:`ModelOptions.from_config`
reading ``config.model`` once and checking it (both make a :class:`ModelOptions`, then ``build``)."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Mapping

import jax.numpy as jnp
from flax.core import FrozenDict

from glif_jax.errors import OptionError, check_flag, check_integer
from glif_jax.layers import initial_values
from glif_jax.models.builder import SpikingNetwork
from glif_jax.models.description import NetworkSpec
from glif_jax.models import registry
from glif_jax.neurons import NeuronConfig, registry as neuron_registry

@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """Everything that makes a :class:`SpikingNetwork` but its class count (known from the data).

    spec: the architecture (``glif_jax.models.get_spec``).
    time_steps: T, >= 1.
    neuron: the spiking layers' :class:`~glif_jax.neurons.NeuronConfig` (which neuron, its
      options, gate mode, surrogate, ...).
    channel_wise: one set of neuron parameters per channel (True) or per layer.
    neuron_init: the neurons' initial values, a preset of ``glif_jax.layers.PRESETS`` or a
      mapping of parameter values (GLIF: its five primitives, in (0, 1); kept as a hashable
      ``FrozenDict``).
    remat: recompute normalisations and neurons in the backward pass (``SpikingNetwork.remat``).

    Every field is checked on construction; a bad value raises
    :class:`~glif_jax.errors.OptionError` naming it (``TypeError`` for a ``spec`` or ``neuron``
    of another type).
    """

    spec: NetworkSpec
    time_steps: int
    neuron: NeuronConfig = NeuronConfig()
    channel_wise: bool = True
    neuron_init: str | Mapping[str, float] = "cifar"
    remat: bool = False

    def __post_init__(self):
        if not isinstance(self.spec, NetworkSpec):
            raise TypeError(f"spec: expected a NetworkSpec, got {type(self.spec).__name__}")
        if not isinstance(self.neuron, NeuronConfig):
            raise TypeError(f"neuron: expected a NeuronConfig, got {type(self.neuron).__name__}")
        # frozen: the checked values are set once, here
        object.__setattr__(self, "time_steps", check_integer("time_steps", self.time_steps, minimum=1))
        object.__setattr__(self, "channel_wise", check_flag("channel_wise", self.channel_wise))
        object.__setattr__(self, "remat", check_flag("remat", self.remat))
        initial_values(self.neuron_init, self.neuron)   # a preset name, or a mapping / ConfigDict of values
        if not isinstance(self.neuron_init, str):   # hashable, so the module can be a static argument of jit
            object.__setattr__(self, "neuron_init", FrozenDict(_as_dict(self.neuron_init)))

    @classmethod
    def from_config(cls, model_config: Any) -> ModelOptions:
        """Reads ``config.model`` (name, time_steps, channel_wise, init, neuron, remat, kwargs).

        A bad value raises :class:`~glif_jax.errors.OptionError` naming its key inside
        ``config.model`` (e.g. ``kwargs.width_multiplier``, ``neuron.gates``, ``init``). A
        ``ModelOptions`` is returned as is.
        """
        if isinstance(model_config, cls):
            return model_config
        if not hasattr(model_config, "get"):
            raise TypeError(f"model_config must be a ConfigDict or a mapping, got {type(model_config).__name__}")
        try:
            spec = registry.get_spec(model_config.get("name", None), **_as_dict(model_config.get("kwargs", None)))
        except OptionError as error:
            raise (error if error.option == "name" else error.within("kwargs")) from None
        except (TypeError, ValueError) as error:   # a model function's own check of its options
            raise OptionError("kwargs", str(error)) from None
        try:
            neuron = neuron_config(_as_dict(model_config.get("neuron", None)))
        except OptionError as error:
            raise error.within("neuron") from None
        except TypeError as error:   # an unknown field
            raise OptionError("neuron", str(error)) from None
        try:
            return cls(spec=spec, time_steps=model_config.get("time_steps", None), neuron=neuron,
                       channel_wise=model_config.get("channel_wise", True),
                       neuron_init=model_config.get("init", "cifar"), remat=model_config.get("remat", False))
        except OptionError as error:
            raise _as_config_key(error) from None

    def build(self, num_classes: int, *, dtype: Any = jnp.float32, bn_axis_name: str | None = None
              ) -> SpikingNetwork:
        """The Flax module for ``num_classes`` classes in compute ``dtype`` (``SpikingNetwork``)."""
        check_integer("num_classes", num_classes, minimum=1)
        return SpikingNetwork(spec=self.spec, num_classes=num_classes, time_steps=self.time_steps,
                              neuron=self.neuron, channel_wise=self.channel_wise, neuron_init=self.neuron_init,
                              dtype=dtype, bn_axis_name=bn_axis_name, remat=self.remat)


def neuron_config(section: Mapping[str, Any]) -> NeuronConfig:
    """The :class:`NeuronConfig` of ``config.model.neuron``.

    Its ``options`` section holds each neuron's options under the neuron's name (the configs list
    every registered neuron's, so that each can be set on the command line); ``kind``'s are used.
    Those of other registered neurons must keep their defaults, else the option is named as not
    one of this neuron's. (A flat section of ``kind``'s options, as a NeuronConfig takes them, is
    read too.)
    """
    section = dict(section)
    options = _as_dict(section.pop("options", None))
    neuron = neuron_registry.get(section.get("kind", NeuronConfig.kind))
    own = neuron.default_options
    if not any(isinstance(value, Mapping) for value in options.values()):
        return NeuronConfig(**section, options=options)   # flat: kind's options
    defaults = neuron_registry.option_defaults()
    for name, values in options.items():
        if name == neuron.name:
            continue
        if not isinstance(values, Mapping):
            raise OptionError(f"options.{name}", f"expected the options of neuron {name!r} as a section, got {values!r}")
        for option, value in values.items():
            default = defaults.get(name, {}).get(option, value)   # another neuron's, not registered here: unread
            if not _same(value, default):
                raise OptionError(f"options.{name}.{option}", f"set to {value!r}, but the neuron is {neuron.name!r}; "
                                  f"options of neuron {name!r} apply only with kind={name!r}")
    try:
        return NeuronConfig(**section, options=dict(options.get(neuron.name, {})) if own else {})
    except OptionError as error:   # name the option by its key, inside the neuron's section
        head, _, rest = error.option.partition(".")
        if head == "options" and rest:
            raise OptionError(f"options.{neuron.name}.{rest}", error.problem) from None
        raise


def _same(value: Any, default: Any) -> bool:
    return value is default or (type(value) is type(default) and value == default)


def get_model(name: str, *, num_classes: int, time_steps: int, neuron: NeuronConfig = NeuronConfig(),
              channel_wise: bool = True, neuron_init: str | Mapping[str, Any] = "cifar", dtype: Any = jnp.float32,
              bn_axis_name: str | None = None, remat: bool = False, init: str | Mapping[str, Any] | None = None,
              **options: Any) -> SpikingNetwork:
    """Model ``name`` as a Flax module: ``module.apply(variables, x, train) -> logits [B, num_classes]``.

    x: static images ``[B, H, W, C]`` (repeated over time inside) or event frames
    ``[B, T, H, W, C]``. Collections: ``params`` and ``batch_stats``. ``options`` are the
    model's options of :func:`~glif_jax.models.get_spec` (e.g. ``width_multiplier=0.25``,
    ``width_change="1x1"`` for wide7b). ``neuron``: every spiking layer's neuron
    (:class:`~glif_jax.neurons.NeuronConfig`, e.g. ``NeuronConfig(kind="plif")``).
    ``neuron_init``: the neurons' initial values, a preset of ``glif_jax.layers.PRESETS`` or a
    mapping of parameter values (``config.model.init``); ``init`` is its earlier name, still
    accepted with a ``DeprecationWarning``.
    ``remat``: recompute normalisations and neurons in the backward pass instead of keeping
    them (same results, less memory under a memory-aware XLA scheduler; :class:`SpikingNetwork`).
    """
    if init is not None:
        if neuron_init != "cifar" and neuron_init != init:
            raise ValueError(f"get_model({name!r}): give neuron_init only (init is its deprecated name)")
        warnings.warn("get_model(init=...) is deprecated; the argument is now called neuron_init",
                      DeprecationWarning, stacklevel=2)
        neuron_init = init
    model = ModelOptions(spec=registry.get_spec(name, **options), time_steps=time_steps, neuron=neuron,
                         channel_wise=channel_wise, neuron_init=neuron_init, remat=remat)
    return model.build(num_classes, dtype=dtype, bn_axis_name=bn_axis_name)


def _as_config_key(error: OptionError) -> OptionError:
    """``error`` naming ``neuron_init`` by its ``config.model`` key, ``init`` (the key keeps the
    name that the saved configs of earlier runs use)."""
    head, dot, rest = error.option.partition(".")
    return OptionError("init" + dot + rest, error.problem) if head == "neuron_init" else error


def _as_dict(section: Any) -> dict[str, Any]:
    """A ConfigDict / mapping / None as a plain dict."""
    if section is None:
        return {}
    if hasattr(section, "to_dict"):
        return section.to_dict()
    return dict(section)

"""Neurons by name: the built-in ones, those a user registers, and any named by import path.

    register(my_neuron)                               # then NeuronConfig(kind="my_neuron")
    get("plif")                                       # a built-in
    get("my_package.neurons:adaptive_lif")            # a Neuron object in an importable module
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable

from glif_jax.errors import OptionError
from glif_jax.neurons.interface import Neuron

_BUILT_IN_MODULES = ("glif_jax.neurons.glif", "glif_jax.neurons.lif", "glif_jax.neurons.plif",
                     "glif_jax.neurons.alif")
_REGISTRY: dict[str, Neuron] = {}
_LOADED: list[bool] = []


def _load_built_ins() -> None:
    if not _LOADED:
        _LOADED.append(True)
        for module in _BUILT_IN_MODULES:
            importlib.import_module(module)   # each registers its neurons


def register(neuron: Neuron, *, replace: bool = False) -> Neuron:
    """Adds ``neuron`` under ``neuron.name`` (usable as ``NeuronConfig(kind=name)`` and in configs).

    Registering another neuron under a taken name is an error unless ``replace``. Returns the
    neuron, so that it can decorate or wrap a definition.
    """
    if not isinstance(neuron, Neuron):
        raise TypeError(f"register: expected a glif_jax.neurons.Neuron, got {type(neuron).__name__}")
    if ":" in neuron.name or not neuron.name:
        raise ValueError(f"register: a neuron's name must be non-empty and free of ':', got {neuron.name!r}")
    _load_built_ins()   # first, so that a user's neuron cannot silently take a built-in's name
    existing = _REGISTRY.get(neuron.name)
    if existing is not None and existing is not neuron and not replace:
        raise ValueError(f"register: a neuron named {neuron.name!r} is already registered "
                         "(pass replace=True to replace it)")
    _REGISTRY[neuron.name] = neuron
    return neuron


def names() -> tuple[str, ...]:
    """The registered neuron names (the built-ins first)."""
    _load_built_ins()
    return tuple(_REGISTRY)


def get(kind: str | Neuron) -> Neuron:
    """The neuron a config's ``kind`` names: a registered name, ``"module.path:attribute"``, or a Neuron.

    Raises :class:`~glif_jax.errors.OptionError` (option ``kind``) for an unknown name (with the
    closest registered names) or an import path that does not import or names no Neuron.
    """
    if isinstance(kind, Neuron):
        return kind
    if not isinstance(kind, str):
        raise OptionError("kind", f"expected a neuron name, 'module:attribute' or a Neuron, got {kind!r}")
    if ":" in kind:
        return _imported(kind)
    _load_built_ins()
    if kind not in _REGISTRY:
        close = difflib.get_close_matches(kind, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(map(repr, close))}" if close else ""
        raise OptionError("kind", f"unknown neuron {kind!r}{hint}; registered: {', '.join(_REGISTRY)}; or give "
                                  "'module.path:attribute' of a glif_jax.neurons.Neuron")
    return _REGISTRY[kind]


def _imported(path: str) -> Neuron:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise OptionError("kind", f"import path {path!r}: expected 'module.path:attribute'")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:   # noqa: BLE001 - any failure of the user's module is reported as is
        raise OptionError("kind", f"neuron {path!r}: cannot import module {module_name!r} "
                                  f"({type(error).__name__}: {error})") from None
    value: object = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise OptionError("kind", f"neuron {path!r}: module {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    if not isinstance(value, Neuron):
        raise OptionError("kind", f"neuron {path!r}: {attribute!r} is a {type(value).__name__}, "
                                  "expected a glif_jax.neurons.Neuron")
    return value


def built_in(factory: Callable[[], Neuron]) -> Neuron:
    """Registers a built-in neuron made by ``factory`` (used by the library's own neuron modules)."""
    neuron = factory()
    _REGISTRY.setdefault(neuron.name, neuron)
    return neuron


def option_defaults() -> dict[str, dict[str, object]]:
    """``{neuron name: {option: default}}`` for every registered neuron that has options (e.g.
    for a config that lists them all, each neuron's under its own name)."""
    return {name: dict(_REGISTRY[name].default_options) for name in names() if _REGISTRY[name].default_options}

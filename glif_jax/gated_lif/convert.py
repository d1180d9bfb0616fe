"""Checkpoints of the authors' GLIF code (CAS-CLab/Gated-LIF) to glif-jax models and back.

:func:`from_gated_lif` reads one of their files (or a state dict already loaded) and returns
the glif-jax model and its ``{"params", "batch_stats"}``; :func:`to_gated_lif` gives the
state dict their code loads with ``load_state_dict(strict=True)``, and :func:`save_gated_lif`
writes it in ``torch.save``'s format. No PyTorch is needed.

How their tensors become ours (see :mod:`glif_jax.gated_lif.layouts` for the key names):

- conv weight ``[O, I, kh, kw]`` (OIHW) → kernel ``[kh, kw, I, O]`` (HWIO);
- linear weight ``[O, I]`` → kernel ``[I, O]``; after a flatten (7B-wideNet) their inputs
  are in C·H·W order and ours in H·W·C, so the rows are permuted too;
- tdBN ``weight, bias, running_mean, running_var`` → ``scale, bias`` (params) and
  ``mean, var`` (batch_stats); ``Vth`` must be 0.5 (glif-jax's tdBN threshold) and
  ``num_batches_tracked`` is a counter glif-jax does not keep. A checkpoint whose tdBNs were
  converted to ``SyncBatchNorm`` (no ``Vth``; their ImageNet training) normalises without
  tdBN's k·V, so ``scale = weight / (k·V)``;
- GLIF ``alpha, beta, gamma, tau, Vth, leak, reVth, conduct`` → ``alpha, beta, gamma, tau,
  v_th, lam, v_re, cond``: the same logits, the same shapes (``conduct`` is ``[T, C]``).

What the tensors tell: the architecture (the key layout and the stem's kernel), the number
of classes (the last linear layer), the width multiplier (the stem's width over the paper's),
T and channel-wise or layer-wise GLIF (``conduct`` is ``[T, C]`` or ``[T]``), the BN kind
(tdBN ``Vth`` buffers present or not), DataParallel (``module.`` prefix) and, for the
7B-wideNet, the kernel of its width-changing convs. What they cannot tell: the gate mode of
the GLIF layers (their published models ran ``--soft-mode``: glif-jax's default soft gates),
the SEW connection of the 7B-wideNet (their command used ADD, the default here), and the
compute dtype; pass ``neuron=`` or model options for those.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import re
import warnings
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from glif_jax.gated_lif.errors import GatedLIFFormatError
from glif_jax.gated_lif.layouts import (GLIF_NAMES, NETWORKS, BatchNorm, HeadKeys, Layer, TheirNetwork,
                                        norm_keys, their_layers, their_shapes)
from glif_jax.gated_lif.pickle_reader import read_torch_file
from glif_jax.gated_lif.pickle_writer import write_torch_file
from glif_jax.layers import TDBN_THRESHOLD
from glif_jax.models import SpikingNetwork, get_model, get_spec, model_options
from glif_jax.neurons import NeuronConfig
from glif_jax.neurons.glif import GATE_NAMES, GLIF

DATA_PARALLEL_PREFIX = "module."
STATE_DICT_KEYS = ("state_dict", "net", "model")
"""Where their checkpoints keep the state dict: ``state_dict`` (``train.py``), ``net`` (``cifar10dvs/train.py``)."""
_OPTIONAL_KEYS = ("num_batches_tracked",)
_LIST_LIMIT = 8


@dataclasses.dataclass(frozen=True)
class GatedLIFCheckpoint:
    """What one of their checkpoints holds, as far as its tensors tell.

    architecture: the glif-jax registry name (``resnet18``, ``resnet19``, ``ms_resnet18``, ``wide7b``).
    their_class: their class building that network.
    num_classes, time_steps, width_multiplier, channel_wise: as :func:`glif_jax.models.get_model` takes them.
    batch_norm: ``"tdbn"`` (tdBatchNorm with ``Vth``), ``"sync"`` (tdBN converted to
      SyncBatchNorm) or ``"plain"`` (BatchNorm2d, the 7B-wideNet).
    data_parallel: whether the keys carry DataParallel's ``module.`` prefix.
    head_keys: how the head's keys read (``"sequential"``, ``"container"``, ``"out"``).
    options: model options the tensors fix (``width_change`` of the 7B-wideNet).
    """

    architecture: str
    their_class: str
    num_classes: int
    time_steps: int
    width_multiplier: float
    channel_wise: bool
    batch_norm: BatchNorm
    data_parallel: bool
    head_keys: HeadKeys
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Reading and recognising a checkpoint


def _key_prefix(data_parallel: bool) -> str:
    """What their keys start with: DataParallel's ``module.``, or nothing."""
    return DATA_PARALLEL_PREFIX if data_parallel else ""


def _as_array(value: Any, key: str, source: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except Exception as error:   # e.g. a tensor that requires grad
        raise GatedLIFFormatError(f"{source}: {key!r} is not an array ({type(value).__name__}: {error})") from error


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(key, str) and (isinstance(value, np.ndarray) or hasattr(value, "__array__"))
        for key, value in obj.items())


def read_state_dict(checkpoint: str | os.PathLike | Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Their state dict as NumPy arrays, keys as stored (in file order, ``module.`` kept).

    checkpoint: a path to a ``torch.save`` file (read without PyTorch), or a mapping: a
      state dict itself, or their checkpoint dict holding it under ``state_dict`` / ``net`` / ``model``.
    """
    return _state_dict_and_source(checkpoint)[0]


def _state_dict_and_source(checkpoint: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, np.ndarray], str]:
    """:func:`read_state_dict`, and the file name (or "state dict") for messages."""
    if isinstance(checkpoint, (str, os.PathLike)):
        source = os.fspath(checkpoint)
        obj = read_torch_file(source)
    else:
        source, obj = "state dict", checkpoint
    if not _is_state_dict(obj):
        inner = [key for key in STATE_DICT_KEYS if isinstance(obj, Mapping) and _is_state_dict(obj.get(key))]
        if not inner:
            found = sorted(map(str, obj))[:_LIST_LIMIT] if isinstance(obj, Mapping) else type(obj).__name__
            raise GatedLIFFormatError(f"{source}: no state dict in it: expected a mapping of names to tensors, or one "
                                      f"under {' / '.join(STATE_DICT_KEYS)}; found {found}")
        obj = obj[inner[0]]
    return {key: _as_array(value, key, source) for key, value in obj.items()}, source


def _strip_data_parallel(state: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], bool]:
    if all(key.startswith(DATA_PARALLEL_PREFIX) for key in state):
        return {key[len(DATA_PARALLEL_PREFIX):]: value for key, value in state.items()}, True
    return dict(state), False


def _shape(state: Mapping[str, np.ndarray], key: str) -> tuple[int, ...] | None:
    return tuple(state[key].shape) if key in state else None


def _head_classes(state: Mapping[str, np.ndarray], network: TheirNetwork) -> tuple[int | None, HeadKeys]:
    """The number of classes (rows of the last linear weight) and how the head's keys read."""
    if network.family == "wide":
        shape = _shape(state, "out.weight")
        return (shape[0] if shape and len(shape) == 2 else None), "out"
    head_keys: HeadKeys = "container" if any(key.startswith("lastave.module") for key in state) else "sequential"
    pattern = re.compile(r"lastave\.(?:module\.)?(\d+)\.weight$|lastave\.module\.weight$")
    found = sorted((int(match.group(1) or 0), key) for key in state if (match := pattern.match(key)))
    if not found or state[found[-1][1]].ndim != 2:
        return None, head_keys
    return int(state[found[-1][1]].shape[0]), head_keys


@dataclasses.dataclass
class _Candidate:
    """One architecture tried against a state dict: what it infers and what does not fit."""

    network: TheirNetwork
    facts: GatedLIFCheckpoint | None = None
    layers: list[Layer] = dataclasses.field(default_factory=list)
    expected: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    missing: list[str] = dataclasses.field(default_factory=list)
    unexpected: list[str] = dataclasses.field(default_factory=list)
    mismatched: list[str] = dataclasses.field(default_factory=list)
    reason: str | None = None

    @property
    def fits(self) -> bool:
        return self.reason is None and not (self.missing or self.unexpected or self.mismatched)

    @property
    def problem_count(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.mismatched)

    def describe_problems(self) -> str:
        if self.reason:
            return self.reason
        lines = []
        for title, items in (("missing keys", self.missing), ("unexpected keys", self.unexpected),
                             ("shape mismatches", self.mismatched)):
            if items:
                shown = ", ".join(items[:_LIST_LIMIT]) + (f", ... ({len(items)} in all)" if len(items) > _LIST_LIMIT
                                                          else "")
                lines.append(f"{title}: {shown}")
        return "; ".join(lines)


def _options_from_stem(network: TheirNetwork, kernel_size: int) -> dict[str, Any]:
    """Options the stem's kernel fixes: the 7B-wideNet's width-changing conv kernel."""
    if network.name == "wide7b" and kernel_size in (1, 3):
        return {"width_change": f"{kernel_size}x{kernel_size}"}
    return {}


def _try(network: TheirNetwork, state: Mapping[str, np.ndarray], data_parallel: bool,
         options: Mapping[str, Any]) -> _Candidate:
    """Infer ``network``'s configuration from ``state`` and list what does not fit it."""
    candidate = _Candidate(network)
    resnet = network.family == "resnet"
    stem_key = "conv1.0.module.0.weight" if resnet else "conv.0.0.module.0.weight"
    conduct_key = "conv1.1.conduct" if resnet else "conv.0.1.conduct"
    stem, conduct = _shape(state, stem_key), _shape(state, conduct_key)
    num_classes, head_keys = _head_classes(state, network)
    if stem is None or len(stem) != 4 or conduct is None or len(conduct) not in (1, 2) or num_classes is None:
        head = "'out.weight'" if not resnet else "'lastave.*.weight'"
        candidate.reason = (f"not their {network.their_class}: it needs a stem conv {stem_key!r} [O, I, kh, kw], "
                            f"a stem GLIF {conduct_key!r} [T, C] or [T] and a head {head} [classes, features]")
        return candidate
    width_multiplier = stem[0] / network.base_stem_width
    stem_options = _options_from_stem(network, stem[2])   # [O, I, kh, kw]
    layout_options = {**stem_options, **options}
    time_steps, channel_wise = conduct[0], len(conduct) == 2
    if resnet:
        batch_norm: BatchNorm = "tdbn" if "conv1.0.module.1.Vth" in state else "sync"
    else:
        batch_norm = "plain"
    try:
        spec = get_spec(network.name, width_multiplier=width_multiplier, **layout_options)
        candidate.layers = their_layers(network, spec, num_classes, head_keys)
    except ValueError as error:
        candidate.reason = f"not their {network.their_class}: {error}"
        return candidate
    candidate.facts = GatedLIFCheckpoint(
        architecture=network.name, their_class=network.their_class, num_classes=num_classes,
        time_steps=time_steps, width_multiplier=width_multiplier, channel_wise=channel_wise,
        batch_norm=batch_norm, data_parallel=data_parallel, head_keys=head_keys,
        options={key: layout_options[key] for key in stem_options})
    candidate.expected = their_shapes(candidate.layers, time_steps=time_steps, channel_wise=channel_wise,
                                      batch_norm=batch_norm)
    prefix = _key_prefix(data_parallel)
    candidate.missing = [prefix + key for key in candidate.expected
                         if key not in state and key.rsplit(".", 1)[-1] not in _OPTIONAL_KEYS]
    candidate.unexpected = [prefix + key for key in state if key not in candidate.expected]
    candidate.mismatched = [f"{prefix}{key}: checkpoint {tuple(state[key].shape)}, expected {shape}"
                            for key, shape in candidate.expected.items()
                            if key in state and tuple(state[key].shape) != shape]
    return candidate


def _their_network(name: str) -> TheirNetwork:
    """Their network for glif-jax model ``name``, or an error listing the ones their code has."""
    if name not in NETWORKS:
        raise GatedLIFFormatError(f"model {name!r}: the authors' code has networks for {', '.join(NETWORKS)} only")
    return NETWORKS[name]


def _summary(facts: GatedLIFCheckpoint) -> str:
    return (f"their {facts.their_class} (glif-jax {facts.architecture!r}, width multiplier "
            f"{facts.width_multiplier:g}, {facts.num_classes} classes, T={facts.time_steps})")


def _recognise(state: Mapping[str, np.ndarray], source: str, model: str | None,
               options: Mapping[str, Any]) -> tuple[GatedLIFCheckpoint, list[Layer], dict[str, np.ndarray]]:
    """Which of their networks ``state`` is, its configuration, its layers, and the state without ``module.``."""
    if model is not None:
        _their_network(model)
    state, data_parallel = _strip_data_parallel(state)
    candidates = [_try(network, state, data_parallel,
                       {key: value for key, value in options.items() if key in model_options(network.name)})
                  for network in NETWORKS.values()]
    fitting = [candidate for candidate in candidates if candidate.fits]
    if model is not None:
        requested = next(candidate for candidate in candidates if candidate.network.name == model)
        if requested.fits:
            fitting = [requested]
        elif fitting:
            raise GatedLIFFormatError(f"{source}: wrong architecture: the checkpoint is {_summary(fitting[0].facts)}, "
                                      f"not their network for {model!r} ({requested.network.their_class})")
        else:
            raise GatedLIFFormatError(f"{source}: does not fit their {requested.network.their_class} "
                                      f"(glif-jax {model!r}): {requested.describe_problems()}")
    if not fitting:
        recognised = [candidate for candidate in candidates if not candidate.reason]
        if not recognised:
            keys = ", ".join(list(state)[:_LIST_LIMIT])
            raise GatedLIFFormatError(f"{source}: not a checkpoint of the authors' ResNet-18/19 (CIFAR), MS-ResNet-18 "
                                      f"(ImageNet) or 7B-wideNet (CIFAR10-DVS); its first keys: {keys}")
        closest = min(recognised, key=lambda candidate: candidate.problem_count)
        raise GatedLIFFormatError(f"{source}: closest to {_summary(closest.facts)}, but it does not fit: "
                                  f"{closest.describe_problems()}")
    chosen = fitting[0]
    _check_values(state, chosen, source)
    return chosen.facts, chosen.layers, state


def _check_values(state: Mapping[str, np.ndarray], candidate: _Candidate, source: str) -> None:
    """Values the conversion relies on: floating tensors, and tdBN thresholds of 0.5."""
    prefix = _key_prefix(candidate.facts.data_parallel)
    for key in candidate.expected:
        value = state.get(key)
        if value is not None and not key.endswith(".num_batches_tracked") and not np.issubdtype(value.dtype,
                                                                                                np.floating):
            raise GatedLIFFormatError(f"{source}: {prefix}{key} has dtype {value.dtype}, expected a floating dtype")
    if candidate.facts.batch_norm != "tdbn":
        return
    for layer in candidate.layers:
        key = f"{layer.theirs}.Vth"
        if layer.kind == "norm" and float(state[key]) != TDBN_THRESHOLD:
            raise GatedLIFFormatError(f"{source}: {prefix}{key} is {float(state[key])}: glif-jax's tdBN scales by "
                                      f"Vth = {TDBN_THRESHOLD} (the default of their tdBatchNorm)")


def describe_gated_lif(checkpoint: str | os.PathLike | Mapping[str, Any], *,
                       model: str | None = None) -> GatedLIFCheckpoint:
    """What a checkpoint of theirs holds (architecture, classes, T, width, BN kind, ...), read from its tensors.

    Raises :class:`GatedLIFFormatError` naming the keys and shapes that fit no network (or not ``model``).
    """
    state, source = _state_dict_and_source(checkpoint)
    facts, _, _ = _recognise(state, source, model, {})
    return facts


# ---------------------------------------------------------------------------------------------
# Their tensors <-> our variables


def _norm_factor(layer: Layer, batch_norm: BatchNorm) -> float:
    """What their BN weight is times ours: k·V for a SyncBatchNorm-converted tdBN, else 1."""
    return layer.k * TDBN_THRESHOLD if batch_norm == "sync" else 1.0


def _linear_to_ours(weight: np.ndarray, layer: Layer) -> np.ndarray:
    """``[O, I]`` → ``[I, O]``; after a flatten, their I = C·H·W becomes our H·W·C."""
    if layer.flattened_chw is None:
        return weight.T
    channels, height, width = layer.flattened_chw
    return weight.reshape(-1, channels, height, width).transpose(2, 3, 1, 0).reshape(height * width * channels, -1)


def _linear_to_theirs(kernel: np.ndarray, layer: Layer) -> np.ndarray:
    if layer.flattened_chw is None:
        return kernel.T
    channels, height, width = layer.flattened_chw
    return kernel.reshape(height, width, channels, -1).transpose(3, 2, 0, 1).reshape(-1, channels * height * width)


def _set(tree: dict, path: tuple[str, ...], value: np.ndarray) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def _get(tree: Mapping, path: tuple[str, ...], what: str) -> np.ndarray:
    node = tree
    for name in path:
        if not isinstance(node, Mapping) or name not in node:
            raise GatedLIFFormatError(f"variables: {what}/{'/'.join(path)} is missing")
        node = node[name]
    return np.asarray(node)


def _variables_from_state(state: Mapping[str, np.ndarray], layers: list[Layer], batch_norm: BatchNorm,
                          exact: bool) -> dict[str, dict]:
    """Our ``{"params", "batch_stats"}`` (NumPy) from their state dict (without ``module.``)."""
    def cast(array: np.ndarray) -> np.ndarray:
        return np.array(array if exact else array.astype(np.float32), order="C")

    params: dict = {}
    batch_stats: dict = {}
    for layer in layers:
        theirs = layer.theirs
        if layer.kind == "conv":
            _set(params, layer.ours + ("kernel",), cast(state[f"{theirs}.weight"].transpose(2, 3, 1, 0)))
        elif layer.kind == "linear":
            _set(params, layer.ours + ("kernel",), cast(_linear_to_ours(state[f"{theirs}.weight"], layer)))
            if layer.bias:
                _set(params, layer.ours + ("bias",), cast(state[f"{theirs}.bias"]))
        elif layer.kind == "norm":
            factor = _norm_factor(layer, batch_norm)
            weight = state[f"{theirs}.weight"]
            scale = weight if factor == 1.0 else weight.astype(np.float64) / factor
            _set(params, layer.ours + ("scale",), cast(scale))
            _set(params, layer.ours + ("bias",), cast(state[f"{theirs}.bias"]))
            _set(batch_stats, layer.ours + ("mean",), cast(state[f"{theirs}.running_mean"]))
            _set(batch_stats, layer.ours + ("var",), cast(state[f"{theirs}.running_var"]))
        else:
            for their_name, our_name in GLIF_NAMES:
                _set(params, layer.ours + (our_name,), cast(state[f"{theirs}.{their_name}"]))
    return {"params": params, "batch_stats": batch_stats}


def _default_dtype(layer: Layer, key: str, network: TheirNetwork) -> np.dtype:
    """The dtype their network holds ``key`` in: the DVS code makes its gates float64."""
    if key == "num_batches_tracked":
        return np.dtype(np.int64)
    if network.family == "wide" and layer.kind == "neuron" and key in GATE_NAMES:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _state_from_variables(variables: Mapping[str, Any], layers: list[Layer], network: TheirNetwork,
                          batch_norm: BatchNorm, like: Mapping[str, np.ndarray] | None,
                          num_batches_tracked: int) -> dict[str, np.ndarray]:
    """Their state dict (without ``module.``) from our variables; dtypes and counters from ``like`` if given."""
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    state: dict[str, np.ndarray] = {}

    def put(layer: Layer, key: str, value: np.ndarray) -> None:
        full = f"{layer.theirs}.{key}"
        dtype = like[full].dtype if like is not None and full in like else _default_dtype(layer, key, network)
        state[full] = np.array(np.asarray(value), dtype=dtype, order="C")

    for layer in layers:
        if layer.kind == "conv":
            put(layer, "weight", _get(params, layer.ours + ("kernel",), "params").transpose(3, 2, 0, 1))
        elif layer.kind == "linear":
            put(layer, "weight", _linear_to_theirs(_get(params, layer.ours + ("kernel",), "params"), layer))
            if layer.bias:
                put(layer, "bias", _get(params, layer.ours + ("bias",), "params"))
        elif layer.kind == "norm":
            factor = _norm_factor(layer, batch_norm)
            scale = _get(params, layer.ours + ("scale",), "params")
            put(layer, "weight", scale if factor == 1.0 else scale.astype(np.float64) * factor)
            put(layer, "bias", _get(params, layer.ours + ("bias",), "params"))
            put(layer, "running_mean", _get(batch_stats, layer.ours + ("mean",), "batch_stats"))
            put(layer, "running_var", _get(batch_stats, layer.ours + ("var",), "batch_stats"))
            counter = f"{layer.theirs}.num_batches_tracked"
            put(layer, "num_batches_tracked", like[counter] if like is not None and counter in like
                else np.array(num_batches_tracked))
            if "Vth" in norm_keys(batch_norm):
                put(layer, "Vth", np.array(TDBN_THRESHOLD))
        else:
            for their_name, our_name in GLIF_NAMES:
                put(layer, their_name, _get(params, layer.ours + (our_name,), "params"))
    return state


# ---------------------------------------------------------------------------------------------
# Models


def variable_shapes(model: SpikingNetwork) -> dict[str, Any]:
    """Shapes of ``model``'s ``params`` and ``batch_stats`` (traced, nothing computed)."""
    init = functools.partial(model.init, train=False)
    example = jax.ShapeDtypeStruct(model.spec.input.example_shape(model.time_steps), jnp.float32)
    shapes = jax.eval_shape(init, jax.random.key(0), example)
    return {name: shapes[name] for name in ("params", "batch_stats")}


def check_variables_fit(variables: Mapping[str, Any], expected: Mapping[str, Any], what: str, model: str) -> None:
    """``variables``' ``params`` and ``batch_stats`` have exactly the paths and leaf shapes of
    ``expected`` (arrays or shape structs, e.g. :func:`variable_shapes`), else
    ``GatedLIFFormatError`` naming ``what`` and ``model``, the paths and both shapes."""
    def shapes(tree: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        collections = {name: tree.get(name, {}) for name in ("params", "batch_stats")}
        return {jax.tree_util.keystr(path): tuple(np.shape(leaf))
                for path, leaf in jax.tree_util.tree_flatten_with_path(collections)[0]}

    expected_shapes, given_shapes = shapes(expected), shapes(variables)
    missing = sorted(set(expected_shapes) - set(given_shapes))
    unexpected = sorted(set(given_shapes) - set(expected_shapes))
    mismatched = [f"{path}: {what} {given_shapes[path]}, the model {shape}" for path, shape in expected_shapes.items()
                  if path in given_shapes and given_shapes[path] != shape]
    if missing or unexpected or mismatched:
        raise GatedLIFFormatError(f"{what} do not fit {model}: missing {missing[:_LIST_LIMIT]}, "
                                  f"unexpected {unexpected[:_LIST_LIMIT]}, shape mismatches {mismatched[:_LIST_LIMIT]}")


def _check_against_model(variables: Mapping[str, Any], model: SpikingNetwork, what: str) -> None:
    """The variables have exactly the model's paths and shapes (names the path and both shapes)."""
    check_variables_fit(variables, variable_shapes(model), what, f"the model {model.spec.name!r}")


def _build_model(facts: GatedLIFCheckpoint, neuron: NeuronConfig, options: Mapping[str, Any]) -> SpikingNetwork:
    network = NETWORKS[facts.architecture]
    arguments = {"neuron_init": network.neuron_init, **facts.options, **options}
    if facts.width_multiplier != 1:
        arguments["width_multiplier"] = facts.width_multiplier
    return get_model(facts.architecture, num_classes=facts.num_classes, time_steps=facts.time_steps, neuron=neuron,
                     channel_wise=facts.channel_wise, **arguments)


def _check_time_steps_in_name(source: str, time_steps: int) -> None:
    """Their file names may state T (``...-step4-CW.pth.tar``, ``..._T_16_...``); warn if it disagrees."""
    match = re.search(r"step(\d+)|_T_(\d+)", os.path.basename(source))
    if match and int(match.group(1) or match.group(2)) != time_steps:
        warnings.warn(f"{source}: the file name says T={match.group(1) or match.group(2)}, its GLIF layers hold "
                      f"conduct for T={time_steps}; using T={time_steps}", stacklevel=3)


def from_gated_lif(checkpoint: str | os.PathLike | Mapping[str, Any], *, model: str | None = None,
                   time_steps: int | None = None, neuron: NeuronConfig = NeuronConfig(), exact: bool = False,
                   **options: Any) -> tuple[SpikingNetwork, dict[str, dict]]:
    """The glif-jax model and variables of one of the authors' checkpoints.

    checkpoint: a path to their ``.pth`` / ``.pth.tar`` (read without PyTorch), or a state
      dict of arrays (or their checkpoint dict holding one under ``state_dict`` / ``net``).
    model: the expected architecture (``resnet18``, ``resnet19``, ``ms_resnet18``,
      ``wide7b``); None recognises it from the keys. A checkpoint of another one is refused.
    time_steps: T, if given, must equal what the GLIF layers hold (``conduct`` is
      ``[T, C]``: their networks, like ours, keep one conductance per time step).
    neuron: how the GLIF layers compute (their published models: soft gates, the default).
    exact: keep every tensor's precision: float64 stays float64 (the 7B-wideNet's gates), and
      SyncBatchNorm weights divided by k·V are kept in float64, so that :func:`to_gated_lif`
      gives back bit-identical arrays. Default: float32 everywhere, as the model's parameters.
    options: further :func:`glif_jax.models.get_model` arguments (e.g. ``connection`` of
      the 7B-wideNet, ``dtype``, ``remat``, ``init``).

    Returns ``(model, {"params": ..., "batch_stats": ...})`` with NumPy arrays, ready for
    ``model.apply(variables, x, train=False)``; ``x`` is ``[B, H, W, 3]`` images or, for
    the 7B-wideNet, ``[B, T, 48, 48, 2]`` frames (their ``[B, T, 2, 48, 48]`` moved to channels-last).
    Raises :class:`GatedLIFFormatError` naming the key (and both shapes) that does not fit.
    """
    state, source = _state_dict_and_source(checkpoint)
    layout_options = {key: options[key] for key in ("width_change",) if key in options}
    facts, layers, state = _recognise(state, source, model, layout_options)
    if time_steps is not None and time_steps != facts.time_steps:
        prefix = _key_prefix(facts.data_parallel)
        stem = next(layer.theirs for layer in layers if layer.kind == "neuron")
        raise GatedLIFFormatError(
            f"{source}: time_steps={time_steps}, but the GLIF layers hold conduct for T={facts.time_steps} "
            f"({prefix}{stem}.conduct has shape {tuple(state[f'{stem}.conduct'].shape)})")
    if isinstance(checkpoint, (str, os.PathLike)):
        _check_time_steps_in_name(source, facts.time_steps)
    if neuron.neuron is not GLIF:
        raise GatedLIFFormatError(f"neuron.kind={neuron.kind!r}: their checkpoints hold gated GLIF layers ('glif')")
    network_model = _build_model(facts, neuron, {key: value for key, value in options.items()
                                                 if key not in layout_options})
    variables = _variables_from_state(state, layers, facts.batch_norm, exact)
    _check_against_model(variables, network_model, "converted variables")
    return network_model, variables


def _facts_of_model(model: SpikingNetwork | str, variables: Mapping[str, Any],
                    options: Mapping[str, Any]) -> tuple[SpikingNetwork, TheirNetwork]:
    """The model (built from the variables' shapes when only its name is given) and their network."""
    if isinstance(model, SpikingNetwork):
        name = model.spec.name
    elif isinstance(model, str):
        name = model
    else:
        raise TypeError(f"to_gated_lif: model must be a registry name or a SpikingNetwork, got {type(model).__name__}")
    network = _their_network(name)
    if isinstance(model, SpikingNetwork):
        if model.neuron.neuron is not GLIF:
            raise GatedLIFFormatError(f"model {name!r} has {model.neuron.kind!r} neurons; their networks hold "
                                      "gated GLIF layers ('glif')")
        return model, network
    params = variables["params"]
    stem = _get(params, ("stem", "conv_norm", "conv", "kernel"), "params").shape
    cond = _get(params, ("stem", "neuron", "cond"), "params").shape
    heads = sorted(int(key[4:]) for key in params if re.fullmatch(r"head\d+", key))
    if not heads:
        raise GatedLIFFormatError("variables: no head layer (params/head1/kernel)")
    num_classes = _get(params, (f"head{heads[-1]}", "kernel"), "params").shape[-1]
    layout = _options_from_stem(network, stem[0])   # [kh, kw, I, O]
    facts = GatedLIFCheckpoint(name, network.their_class, int(num_classes), int(cond[0]),
                               stem[-1] / network.base_stem_width, len(cond) == 2, network.batch_norm,
                               network.data_parallel, network.head_keys, layout)
    return _build_model(facts, NeuronConfig(), options), network


def to_gated_lif(model: SpikingNetwork | str, variables: Mapping[str, Any], *,
                 like: str | os.PathLike | Mapping[str, Any] | None = None, batch_norm: BatchNorm | None = None,
                 data_parallel: bool | None = None, num_batches_tracked: int = 0,
                 **options: Any) -> collections.OrderedDict[str, np.ndarray]:
    """The state dict of the authors' network holding ``variables``, for their ``load_state_dict(strict=True)``.

    model: the glif-jax model, or its registry name (the rest is read from the variables'
      shapes; ``options`` as for :func:`glif_jax.models.get_model`).
    variables: ``{"params", "batch_stats"}`` of the model.
    like: one of their checkpoints (path or state dict) whose format to follow: key prefix,
      BN kind, head key names, key order, dtypes and ``num_batches_tracked`` counters; it
      must be of the same network (and ``batch_norm`` / ``data_parallel``, if given, agree).
      With ``like`` the original checkpoint, ``to_gated_lif(*from_gated_lif(like, exact=True),
      like=like)`` gives back every array bit for bit.
    batch_norm: ``"tdbn"`` (their tdBatchNorm, with ``Vth`` buffers) or ``"sync"`` (tdBN
      converted to SyncBatchNorm, as their ImageNet evaluation loads it: weights times k·V).
      Default: what their published checkpoint of the network holds (``sync`` for
      ``ms_resnet18``, ``tdbn`` for the CIFAR ResNets; the 7B-wideNet has plain BatchNorm).
    data_parallel: prefix every key with ``module.``; default as their published checkpoint
      (True for ``ms_resnet18``, whose evaluation strips it).
    num_batches_tracked: the BN counters to write (glif-jax does not keep them).

    Returns an ``OrderedDict`` of NumPy arrays in their layouts (OIHW convs, ``[O, I]``
    linears) and dtypes (float32; the 7B-wideNet's gates float64; int64 counters).
    """
    network_model, network = _facts_of_model(model, variables, options)
    _check_against_model(variables, network_model, "variables")
    like_state = like_facts = None
    if like is not None:
        raw_like, like_source = _state_dict_and_source(like)
        like_facts, _, like_state = _recognise(raw_like, like_source, network.name, {})
        for argument, given, liked in (("batch_norm", batch_norm, like_facts.batch_norm),
                                       ("data_parallel", data_parallel, like_facts.data_parallel)):
            if given is not None and given != liked:
                raise GatedLIFFormatError(f"{argument}={given!r} contradicts like={like_source}, which has {liked!r}")
        batch_norm, data_parallel = like_facts.batch_norm, like_facts.data_parallel
    head_keys = like_facts.head_keys if like_facts is not None else network.head_keys
    if network.family == "wide":
        if batch_norm not in (None, "plain"):
            raise GatedLIFFormatError(f"batch_norm={batch_norm!r}: their 7B-wideNet has plain BatchNorm2d layers")
        batch_norm = "plain"
    elif batch_norm is None:
        batch_norm = network.batch_norm
    elif batch_norm not in ("tdbn", "sync"):
        raise GatedLIFFormatError(f"batch_norm={batch_norm!r}: expected 'tdbn' or 'sync' for their ResNets")
    data_parallel = network.data_parallel if data_parallel is None else data_parallel
    layers = their_layers(network, network_model.spec, network_model.num_classes, head_keys)
    if like_state is not None:
        shapes = their_shapes(layers, time_steps=network_model.time_steps, channel_wise=network_model.channel_wise,
                              batch_norm=batch_norm)
        differing = [f"{key}: like {tuple(value.shape)}, the model {shapes.get(key)}"
                     for key, value in like_state.items() if shapes.get(key) != tuple(value.shape)]
        if differing:
            raise GatedLIFFormatError(f"like={like_source}: it is {_summary(like_facts)}, which differs from the "
                                      f"model: {', '.join(differing[:_LIST_LIMIT])}")
    state = _state_from_variables(variables, layers, network, batch_norm, like_state, num_batches_tracked)
    order = list(like_state) if like_state is not None else list(state)
    prefix = _key_prefix(data_parallel)
    return collections.OrderedDict((prefix + key, state[key]) for key in order if key in state)


def save_gated_lif(path: str | os.PathLike, state_dict: Mapping[str, Any], *, key: str | None = "state_dict",
                   extra: Mapping[str, Any] | None = None) -> None:
    """Write ``state_dict`` as their code's checkpoint, in ``torch.save``'s zip format (no PyTorch needed).

    key: the entry holding the state dict: ``"state_dict"`` (their ``train.py`` loads
      ``checkpoint['state_dict']``), ``"net"`` (their ``cifar10dvs/train.py``), or None to
      write the bare state dict.
    extra: further entries of the checkpoint dict (numbers, strings, arrays), e.g. ``{"epoch": 199}``.
    ``torch.load(path, weights_only=True)`` reads the file.
    """
    ordered = collections.OrderedDict((name, np.asarray(value)) for name, value in state_dict.items())
    if key is None:
        if extra:
            raise ValueError("save_gated_lif: extra entries need a key for the state dict")
        write_torch_file(path, ordered)
        return
    write_torch_file(path, {key: ordered, **dict(extra or {})})

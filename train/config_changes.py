"""What changed between a run's saved config and the config it is resumed with.

A resumed run continues the trajectory its checkpoint belongs to only if nothing that
shapes that trajectory changed: the model, neuron, data, batch size, steps per epoch,
number of epochs (the cosine schedule), optimiser, seed, precision or parallel layout.
Keys that only change what is logged, evaluated or saved (:data:`HARMLESS`) may change
freely. ``train_and_evaluate`` refuses the others unless told that the change is
deliberate, and records every resume in ``config_history.jsonl`` of the work directory
(the run's ``config.json`` is never rewritten).
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

from glif_jax.workdir import append_text, workdir_path

HISTORY_FILE = "config_history.jsonl"

# Dotted keys (or prefixes ending in ".") whose value does not alter the trained parameters.
HARMLESS = (
    "log_every_steps",
    "eval_batch_size",
    "eval_steps",
    "spike_stats",
    "checkpoint.",
    "nonfinite.",            # what to do if a step is not finite: a finite run is unchanged
    "model.init",            # the GLIF initial values: a resumed run continues from its checkpoint
    "dataset.data_dir",      # where the same data lives
    "dataset.cache_dir",
    "dataset.prefetch",
    "dataset.eval_path",
)

_ABSENT = "<absent>"


def flatten(config: Any) -> dict[str, Any]:
    """``{"model.neuron.kind": "glif", ...}`` of a ConfigDict (or nested dicts), JSON values."""
    tree = json.loads(config.to_json()) if hasattr(config, "to_json") else json.loads(json.dumps(config))
    flat: dict[str, Any] = {}

    def visit(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                visit(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    visit(tree, "")
    return flat


def changes(saved: Any, current: Any) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved value, current value)}`` for every key whose value differs (or exists
    on one side only: then the missing side is ``"<absent>"``)."""
    old, new = flatten(saved), flatten(current)
    return {key: (old.get(key, _ABSENT), new.get(key, _ABSENT))
            for key in sorted(set(old) | set(new)) if old.get(key, _ABSENT) != new.get(key, _ABSENT)}


def is_harmless(key: str) -> bool:
    return any(key == name or (name.endswith(".") and key.startswith(name)) for name in HARMLESS)


def _neuron_defaults() -> dict[str, Any]:
    """``config.model.neuron`` keys that configs of earlier versions lacked, with the value that
    computes as those versions did (every NeuronConfig field's default, the neurons' options)."""
    import dataclasses

    from glif_jax import neurons

    defaults = {f"model.neuron.{field.name}": field.default for field in dataclasses.fields(neurons.NeuronConfig)
                if field.name != "options" and field.init}
    defaults.update({f"model.neuron.options.{neuron}.{name}": value
                     for neuron, options in neurons.registry.option_defaults().items()
                     for name, value in options.items()})
    return json.loads(json.dumps(defaults))


def trajectory_changes(changed: dict[str, tuple[Any, Any]]) -> dict[str, tuple[Any, Any]]:
    """The entries of ``changed`` that alter the training trajectory (not a neuron key that the
    saved config of an earlier version lacks and the current one has at its default)."""
    defaults = _neuron_defaults()

    def added_at_its_default(key: str, old: Any, new: Any) -> bool:
        return old == _ABSENT and defaults.get(key, _ABSENT) == new

    return {key: values for key, values in changed.items()
            if not is_harmless(key) and not added_at_its_default(key, *values)}


def describe(changed: dict[str, tuple[Any, Any]]) -> str:
    """One line per key: ``model.time_steps: 4 -> 2``."""
    return "\n".join(f"  {key}: {json.dumps(old)} -> {json.dumps(new)}" for key, (old, new) in changed.items())


def record_resume(workdir: str | os.PathLike, step: int, changed: dict[str, tuple[Any, Any]], config: Any) -> os.PathLike:
    """Appends one line to ``workdir/config_history.jsonl``: when, at which step, what changed,
    and the whole config the run continues with."""
    path = workdir_path(workdir) / HISTORY_FILE
    record = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "resumed_at_step": step,
        "changes": {key: [old, new] for key, (old, new) in changed.items()},
        "config": json.loads(config.to_json()) if hasattr(config, "to_json") else config,
    }
    append_text(path, json.dumps(record, sort_keys=True) + "\n")
    return path

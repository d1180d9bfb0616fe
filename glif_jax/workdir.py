"""The files of a ``glif-train`` work directory that the training system and the analysis share.

    <workdir>/config.json     the config the run was started with (:func:`save_config`)
    <workdir>/checkpoints/    its checkpoints (:class:`glif_jax.checkpoint.Checkpointer`)

The training system writes them (``glif_jax.train``); ``glif-eval`` and the analysis
(:mod:`glif_jax.analysis`) read them back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glif_jax.extras import require

CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"


class WorkdirError(RuntimeError):
    """A work directory lacks its config, or the config cannot be read."""


def save_config(directory: str | Path, config: Any) -> Path:
    """Writes ``config`` (an ``ml_collections.ConfigDict``) as ``directory/config.json``."""
    path = Path(directory) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_json(indent=2, sort_keys=True) + "\n")
    return path


def load_config(directory: str | Path):
    """Reads ``directory/config.json`` back into a locked ``ml_collections.ConfigDict``."""
    ml_collections = require("ml_collections", "train", "Reading a run's config")
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise WorkdirError(f"no {CONFIG_FILE} in {Path(directory).absolute()} (not a training workdir?)")
    try:
        config = ml_collections.ConfigDict(json.loads(path.read_text()))
    except json.JSONDecodeError as error:
        raise WorkdirError(f"{path} is not valid JSON: {error}") from error
    config.lock()
    return config

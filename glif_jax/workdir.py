"""The files of a ``glif-train`` work directory that the training system and the analysis share.

    <workdir>/config.json     the config the run was started with (:func:`save_config`)
    <workdir>/checkpoints/    its checkpoints (:class:`glif_jax.checkpoint.Checkpointer`)
    <workdir>/run.lock        the process that runs in it (:mod:`glif_jax.workdir_lock`)

The training system writes them (``glif_jax.train``); ``glif-eval`` and the analysis
(:mod:`glif_jax.analysis`) read them back. A workdir is any path that ``etils.epath``
understands (:func:`workdir_path`): a local directory, or e.g. ``gs://bucket/run`` where a
cloud file system is installed; every file of the training system goes through it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from glif_jax.extras import require

CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"


class WorkdirError(RuntimeError):
    """A work directory lacks its config, or the config cannot be read."""


def workdir_path(path: str | os.PathLike):
    """``path`` as an ``etils.epath.Path``: the one path type of a workdir and everything in it
    (local paths and, with a cloud file system installed, ``gs://`` / ``s3://`` URLs alike)."""
    epath = require("etils.epath", "train", "A training work directory")
    return epath.Path(path)


def append_text(path, text: str) -> None:
    """Appends ``text`` to the file ``path`` (an ``etils.epath.Path``), creating it when missing.

    Object stores (``gs://`` ...) cannot append: there the file is read and written whole."""
    if "://" not in str(path):
        with path.open("a") as file:
            file.write(text)
        return
    path.write_text((path.read_text() if path.exists() else "") + text)


def save_config(directory: str | os.PathLike, config: Any):
    """Writes ``config`` (an ``ml_collections.ConfigDict``) as ``directory/config.json``; returns its path."""
    path = workdir_path(directory) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_json(indent=2, sort_keys=True) + "\n")
    return path


def load_config(directory: str | os.PathLike):
    """Reads ``directory/config.json`` back into a locked ``ml_collections.ConfigDict``."""
    ml_collections = require("ml_collections", "train", "Reading a run's config")
    path = workdir_path(directory) / CONFIG_FILE
    if not path.is_file():
        raise WorkdirError(f"no {CONFIG_FILE} in {workdir_path(directory).absolute()} (not a training workdir?)")
    try:
        config = ml_collections.ConfigDict(json.loads(path.read_text()))
    except json.JSONDecodeError as error:
        raise WorkdirError(f"{path} is not valid JSON: {error}") from error
    config.lock()
    return config

"""Finding a prepared tensorflow-datasets builder offline, preparing it from original
archives the user placed in the manual directory, or failing with instructions."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from glif_jax.data.errors import DatasetNotFoundError
from glif_jax.data.tf_host import import_tfds

logger = logging.getLogger(__name__)


def manual_dir(data_dir: str | None) -> Path:
    """`<data_dir>/downloads/manual`: where tfds looks for manually downloaded archives."""
    tfds = import_tfds()
    root = data_dir if data_dir is not None else tfds.core.constants.DATA_DIR
    return Path(os.path.expanduser(root)) / "downloads" / "manual"


def prepared_builder(
    tfds_name: str,
    data_dir: str | None,
    *,
    archives: tuple[str, ...],
    how_to_get: str,
    may_prepare: bool,
) -> Any:
    """Returns the tfds builder of `tfds_name`, prepared in `data_dir`.

    If it is not prepared yet but all `archives` (the original files, e.g.
    "cifar-10-binary.tar.gz") lie in `manual_dir(data_dir)`, it is prepared from them
    (no network access) when `may_prepare`; otherwise DatasetNotFoundError.
    """
    tfds = import_tfds()
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    if builder.is_prepared():
        return builder
    manual = manual_dir(data_dir)
    searched = f"{builder.data_dir} (prepared tfds data) and {manual} (original archives)"
    if not all((manual / archive).is_file() for archive in archives):
        raise DatasetNotFoundError(tfds_name, searched, how_to_get)
    if not may_prepare:
        raise DatasetNotFoundError(
            tfds_name,
            searched,
            f"The archives are in {manual} but the dataset is not prepared, and "
            "preparing it from several processes at once is unsafe: prepare it once "
            f"with `tfds build {tfds_name} --data_dir {builder.data_dir_root} "
            f"--manual_dir {manual}`, or with a single-process run.",
        )
    logger.info("Preparing %s in %s from the archives in %s", tfds_name, builder.data_dir, manual)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual))
    )
    return builder

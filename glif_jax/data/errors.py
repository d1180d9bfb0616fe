"""The error raised when a dataset's files are not where the pipeline looks for them."""

from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is missing on disk.

    The message names the directory that was searched, where the files must go and how to
    obtain them (no pipeline in this package ever downloads anything).
    """

    def __init__(self, dataset: str, searched: str, how_to_get: str):
        self.dataset = dataset
        self.searched = searched
        self.how_to_get = how_to_get
        super().__init__(
            f"Dataset {dataset!r} not found: searched {searched}.\n{how_to_get}"
        )

"""Data sources: `kaggle`, `local` and `synthetic`, one interface.

Each source writes a dataset's files, in Kaggle's own layout, into a folder it is given; the
snapshot store then hashes and publishes that folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mlops_onnx.datasets import DatasetSpec
from mlops_onnx.settings import Settings

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """The source could not deliver the dataset (credentials, network, missing folder).

    `retryable` is False when trying again cannot help (no or rejected credentials, a missing
    folder, a directory where a file belongs): the task then fails at once instead of retrying.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


def fetch(source: str, dataset: DatasetSpec, dest: Path, settings: Settings) -> dict:
    """Write `dataset`'s files into `dest` from `source`; return details to keep in the manifest."""
    if source == "kaggle":
        from mlops_onnx.sources.kaggle import fetch_kaggle

        return fetch_kaggle(dataset, dest, settings)
    if source == "local":
        from mlops_onnx.sources.local import fetch_local

        return fetch_local(dataset, dest, settings)
    if source == "synthetic":
        from mlops_onnx.sources.synthetic import fetch_synthetic

        return fetch_synthetic(dataset, dest, settings)
    raise SourceError(f"unknown data source {source!r}")

"""Data sources: `kaggle`, `local` and `synthetic`, one interface.

Each source writes a dataset's files, in Kaggle's own layout, into a folder it is given; the
snapshot store then hashes and publishes that folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mlops_onnx.datasets import DatasetSpec
from mlops_onnx.settings import Settings
from mlops_onnx.sources.errors import SourceError

log = logging.getLogger(__name__)

__all__ = ["SourceError", "fetch"]


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

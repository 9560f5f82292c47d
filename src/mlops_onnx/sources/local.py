"""The `local` source: a folder in Kaggle's own layout (`$MLOPS_DATA_DIR/<dataset folder>/...`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlops_onnx.datasets import DatasetSpec
from mlops_onnx.settings import Settings
from mlops_onnx.sources.errors import SourceError


def fetch_local(dataset: DatasetSpec, dest: Path, settings: Settings) -> dict:
    if settings.data_dir is None:
        raise SourceError("local source: MLOPS_DATA_DIR is not set", retryable=False)
    folder = settings.data_dir / dataset.folder
    if not folder.is_dir():
        raise SourceError(
            f"local source: {folder} does not exist (expected Kaggle's layout for {dataset.slug})", retryable=False
        )
    copied = copy_dataset_files(dataset, folder, dest)
    return {"local_folder": str(folder), "files_copied": copied}


def copy_dataset_files(dataset: DatasetSpec, folder: Path, dest: Path) -> int:
    """Copy the files the dataset declares (glob patterns) from `folder` into `dest`."""
    copied = 0
    for pattern in dataset.file_patterns:
        matches = sorted(folder.glob(pattern))
        if not matches and not dataset.patterns_optional:
            raise SourceError(f"{folder}: no file matches {pattern!r} (dataset {dataset.slug})")
        for path in matches:
            target = dest / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                raise SourceError(f"{path}: is a directory where the dataset expects a file", retryable=False)
            shutil.copyfile(path, target)
            copied += 1
    if copied == 0:
        raise SourceError(f"{folder}: no file matches any of {list(dataset.file_patterns)} (dataset {dataset.slug})")
    return copied

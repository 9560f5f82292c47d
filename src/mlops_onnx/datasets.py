"""The Kaggle datasets the pipelines read: slug, folder name and which files belong to them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    slug: str  # Kaggle "<owner>/<dataset>"
    file_patterns: tuple[str, ...]  # glob patterns relative to the dataset folder
    patterns_optional: bool = False  # True when a pattern may match nothing (e.g. an empty ETFs/)

    @property
    def folder(self) -> str:
        """Folder name of the dataset in a local copy of Kaggle's layout (`$MLOPS_DATA_DIR/<folder>`)."""
        return self.slug.split("/", 1)[1]


FASHION_MNIST = DatasetSpec(
    name="fashionmnist",
    slug="zalando-research/fashionmnist",
    file_patterns=("fashion-mnist_train.csv", "fashion-mnist_test.csv"),
)

"""The Kaggle datasets the pipelines read: slug, folder name and which files belong to them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    slug: str  # Kaggle "<owner>/<dataset>"
    file_patterns: tuple[str, ...]  # glob patterns relative to the dataset folder
    patterns_optional: bool = False  # True when a pattern may match nothing (e.g. an empty ETFs/)
    # Secondary datasets snapshotted with this one under `aux/<name>/` (e.g. LIAR for a
    # cross-dataset check); a missing one is recorded, not fatal.
    auxiliary: tuple[DatasetSpec, ...] = ()
    local_folder: str | None = None  # folder name under MLOPS_DATA_DIR when it is not the slug's

    @property
    def folder(self) -> str:
        """Folder name of the dataset in a local copy of Kaggle's layout (`$MLOPS_DATA_DIR/<folder>`)."""
        return self.local_folder or self.slug.split("/", 1)[1]


FASHION_MNIST = DatasetSpec(
    name="fashionmnist",
    slug="zalando-research/fashionmnist",
    file_patterns=("fashion-mnist_train.csv", "fashion-mnist_test.csv"),
)

LIAR = DatasetSpec(
    name="liar",
    slug="doanquanvietnamca/liar-dataset",  # LIAR (Wang 2017) as mirrored on Kaggle
    file_patterns=("train.tsv", "valid.tsv", "test.tsv"),
    patterns_optional=True,
    local_folder="liar_dataset",
)

FAKE_NEWS = DatasetSpec(
    name="fake_news",
    slug="clmentbisaillon/fake-and-real-news-dataset",
    file_patterns=("Fake.csv", "True.csv"),
    auxiliary=(LIAR,),
)

STOCKS = DatasetSpec(
    name="stocks",
    slug="borismarjanovic/price-volume-data-for-all-us-stocks-etfs",
    file_patterns=("Stocks/*.us.txt", "ETFs/*.us.txt"),
    patterns_optional=True,
)

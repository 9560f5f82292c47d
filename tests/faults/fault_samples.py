"""Small real samples of the three Kaggle datasets in Kaggle's own layout (synthetic ones where the
shared sample is absent), written into a folder for the `local` source, and a snapshot of them that
passed validation (`last_good`) plus a registered champion, so a test can show both stay untouched."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from conftest import HAS_SHARED_DATA, SHARED_DATA


@dataclass(frozen=True)
class Dataset:
    key: str  # fashion, news, stocks
    model: str  # registered model / MLflow experiment
    dag_id: str
    name: str  # snapshot dataset name
    folder: str  # folder under MLOPS_DATA_DIR
    target: str  # the file each case breaks
    rows: int  # data rows of `target` in the good sample


FASHION = Dataset(
    "fashion",
    "fashion_mnist_classifier",
    "fashion_mnist_nightly",
    "fashionmnist",
    "fashionmnist",
    "fashion-mnist_train.csv",
    1000,
)
NEWS = Dataset(
    "news", "fake_news_classifier", "fake_news_nightly", "fake_news", "fake-and-real-news-dataset", "Fake.csv", 250
)
REAL_TICKERS = ("Stocks/aapl.us.txt", "Stocks/msft.us.txt", "Stocks/ibm.us.txt", "ETFs/spy.us.txt")
SYNTHETIC_TICKERS = ("Stocks/acme.us.txt", "Stocks/bolt.us.txt", "Stocks/cobl.us.txt", "ETFs/mkt.us.txt")
TICKERS = REAL_TICKERS if HAS_SHARED_DATA else SYNTHETIC_TICKERS
STOCKS = Dataset(
    "stocks",
    "stock_forecaster",
    "stock_forecast_nightly",
    "stocks",
    "price-volume-data-for-all-us-stocks-etfs",
    TICKERS[0],
    400,
)
DATASETS = {d.key: d for d in (FASHION, NEWS, STOCKS)}
# Quick profile: a stock snapshot passes with 3 good tickers; the sample has 4, so one bad file is
# quarantined and the run goes on, two bad files fail it.
MIN_TICKERS = "3"


def fashion_lines(rows: int) -> list[str]:
    """Header + `rows` data lines of Kaggle's Fashion-MNIST CSV (train rows first, then test rows)."""
    if HAS_SHARED_DATA:
        train = (SHARED_DATA / "fashionmnist" / "fashion-mnist_train.csv").read_text().splitlines()
        test = (SHARED_DATA / "fashionmnist" / "fashion-mnist_test.csv").read_text().splitlines()
        return (train + test[1:])[: rows + 1]
    from mlops_onnx.sources.synthetic import _fashion_rows

    header = "label," + ",".join(f"pixel{i}" for i in range(1, 785))
    return [header] + [",".join(map(str, row)) for row in _fashion_rows(rows, np.random.default_rng(rows))]


def news_frame(name: str, rows: int) -> pd.DataFrame:
    if HAS_SHARED_DATA:
        frame = pd.read_csv(SHARED_DATA / NEWS.folder / name, dtype=str, keep_default_na=False)
    else:
        from mlops_onnx.sources.synthetic_news import generate_news

        scratch = Path(tempfile.mkdtemp())
        generate_news(scratch, np.random.default_rng(0), SimpleNamespace(synthetic_size="demo"))
        frame = pd.read_csv(scratch / name, dtype=str, keep_default_na=False)
        shutil.rmtree(scratch, ignore_errors=True)
    return frame.head(rows)


def ticker_lines(name: str, rows: int) -> list[str]:
    """Header + `rows` data lines of one ticker file (the archive writes CRLF; callers keep it)."""
    if HAS_SHARED_DATA:
        return (SHARED_DATA / STOCKS.folder / name).read_text().splitlines()[: rows + 1]
    from mlops_onnx.sources.synthetic_stocks import random_walk, write_ticker

    scratch = Path(tempfile.mkdtemp())
    write_ticker(scratch / "t.us.txt", random_walk(np.random.default_rng(sum(map(ord, name))), rows))
    lines = (scratch / "t.us.txt").read_text().splitlines()
    shutil.rmtree(scratch, ignore_errors=True)
    return lines


def write_lines(path: Path, lines: list[str], newline: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(lines) + newline).encode())


def write_target(dataset: Dataset, path: Path, rows: int) -> None:
    """The dataset's target file with `rows` data rows of real (or synthetic) data."""
    if dataset is FASHION:
        write_lines(path, fashion_lines(rows))
    elif dataset is NEWS:
        path.parent.mkdir(parents=True, exist_ok=True)
        news_frame(path.name, rows).to_csv(path, index=False)
    else:
        write_lines(path, ticker_lines(dataset.target, rows), "\r\n")


def write_good(dataset: Dataset, data_dir: Path) -> Path:
    """The good sample in Kaggle's layout under `data_dir/<folder>`; returns that folder."""
    folder = data_dir / dataset.folder
    if dataset is FASHION:
        write_lines(folder / "fashion-mnist_train.csv", fashion_lines(FASHION.rows))
        write_lines(folder / "fashion-mnist_test.csv", [fashion_lines(1)[0], *fashion_lines(1200)[1001:]])
    elif dataset is NEWS:
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("Fake.csv", "True.csv"):
            news_frame(name, NEWS.rows).to_csv(folder / name, index=False)
    else:
        for name in TICKERS:
            write_lines(folder / name, ticker_lines(name, STOCKS.rows), "\r\n")
    return folder


def publish_last_good(dataset: Dataset, folder: Path, snapshots: Path) -> str:
    """Snapshot `folder` as the `local` source would and mark it last_good; returns its hash."""
    from mlops_onnx.snapshots import SnapshotStore

    store = SnapshotStore(snapshots)
    with store.staging(dataset.name) as staging:
        shutil.copytree(folder, staging, dirs_exist_ok=True)
        snapshot = store.commit(dataset.name, staging, source="local")
    store.promote(snapshot, validation={"note": "published by the fault tests"})
    return snapshot.content_hash


def register_champion(model: str, tracking_uri: str, source: Path) -> None:
    """One registered version with `champion`, as a previous good night would leave it."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    source.mkdir(parents=True, exist_ok=True)
    (source / "MLmodel").write_text("artifact_path: model\n")
    client.create_registered_model(model)
    version = client.create_model_version(model, source=str(source))
    client.set_registered_model_alias(model, "champion", version.version)


def registry_state(model: str, tracking_uri: str) -> dict:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    versions = client.search_model_versions(f"name = '{model}'")
    return {
        "versions": sorted(str(v.version) for v in versions),
        "champion": str(client.get_model_version_by_alias(model, "champion").version),
    }


def snapshots_root(settings) -> Path:
    """The folder behind the default `file://` snapshot storage (`settings.snapshots_dir` is a URL)."""
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(settings.snapshots_dir).path))


def pointer(snapshots: Path, dataset: Dataset) -> dict | None:
    path = snapshots / dataset.name / "last_good.json"
    return json.loads(path.read_text()) if path.exists() else None

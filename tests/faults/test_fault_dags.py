"""The fault cases through real Airflow runs (`airflow dags test`): one bad input per dataset and
Kaggle refusing the credentials. Each run starts from a night that went well (a `last_good`
snapshot and a registered champion) and must stop at the right task, leaving both as they were.

Kaggle is a local HTTP server the real `kaggle` client reaches (see `test_source_failures.py`).
The four runs are independent (own MLOPS_HOME, Airflow and MLflow stores) and start together, so
the module costs about as much as its slowest run.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import mlflow_client, pipeline_env, run_dag
from fault_samples import (
    DATASETS,
    MIN_TICKERS,
    STOCKS,
    TICKERS,
    pointer,
    publish_last_good,
    register_champion,
    registry_state,
    write_good,
)
from test_bad_input import CASES, out_of_range, zero_bytes
from test_source_failures import FAILURES, KEY, KaggleServer

pytestmark = pytest.mark.e2e


@dataclass
class Night:
    dataset_key: str
    home: Path
    env: dict
    last_good: dict
    failed_task: str
    texts: list[str]
    done: object = None
    kaggle_requests: list[str] = field(default_factory=list)  # what the fake Kaggle was asked


def prepare(tmp: Path, key: str, breakage: str | None, kaggle: KaggleServer) -> Night:
    """A home where the earlier night passed, and a data folder (or Kaggle) that fails tonight."""
    dataset = DATASETS[key]
    home, data = tmp / "home", tmp / "data"
    publish_last_good(dataset, write_good(dataset, tmp / "earlier"), home / "snapshots")
    register_champion(dataset.model, f"sqlite:///{home / 'mlflow.db'}", home / "previous-model")
    if breakage == "kaggle_rejects_credentials":
        # The real client, pointed at the fake Kaggle: its LOCALHOST endpoint (http://localhost), reached
        # through the fake as an HTTP proxy, so no fixed port is needed.
        env = pipeline_env(
            home,
            MLOPS_DATA_SOURCE="kaggle",
            KAGGLE_USERNAME="nightly-bot",
            KAGGLE_KEY=KEY,
            KAGGLE_API_ENVIRONMENT="LOCALHOST",
            HTTP_PROXY=kaggle.url,
            NO_PROXY="127.0.0.1",
        )
        return Night(key, home, env, pointer(home / "snapshots", dataset), "ingest", [FAILURES["bad_credentials"][0]])
    folder = write_good(dataset, data)
    if breakage is None:  # stocks: two of four ticker files bad, fewer than MLOPS_STOCK_MIN_TICKERS pass
        zero_bytes(STOCKS, folder / TICKERS[0])
        out_of_range(STOCKS, folder / TICKERS[1])
        texts = [f"only 2 file(s) passed, at least {MIN_TICKERS} required", TICKERS[0], TICKERS[1]]
    else:
        case = next(c for c in CASES if c.name == breakage)
        case.breaks(dataset, folder / dataset.target)
        texts = case.expected[key][1]
    env = pipeline_env(home, data_dir=data, MLOPS_STOCK_MIN_TICKERS=MIN_TICKERS)
    return Night(key, home, env, pointer(home / "snapshots", dataset), "validate", texts)


NIGHTS = {  # name -> (dataset, breakage)
    "fashion_truncated_csv": ("fashion", "truncated"),
    "news_renamed_column": ("news", "renamed_column"),
    "stocks_too_many_bad_tickers": ("stocks", None),
    "fashion_kaggle_rejects_credentials": ("fashion", "kaggle_rejects_credentials"),
}


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    kaggle = KaggleServer()  # answers 401 like Kaggle does for a wrong key
    kaggle.mode = "bad_credentials"
    runs = {name: prepare(tmp_path_factory.mktemp(name), *spec, kaggle) for name, spec in NIGHTS.items()}
    try:
        with ThreadPoolExecutor(max_workers=len(runs)) as pool:
            done = {
                name: pool.submit(run_dag, DATASETS[night.dataset_key].dag_id, night.env)
                for name, night in runs.items()
            }
            for name, future in done.items():
                runs[name].done = future.result()
    finally:
        kaggle.shutdown()
        kaggle.server_close()
    runs["fashion_kaggle_rejects_credentials"].kaggle_requests = list(kaggle.requests)
    return runs


@pytest.mark.parametrize("name", list(NIGHTS))
def test_the_run_stops_at_the_failing_task_and_leaves_last_good_and_the_registry(nights, name):
    night = nights[name]
    dataset = DATASETS[night.dataset_key]
    output = night.done.stdout + night.done.stderr
    assert night.done.returncode != 0
    assert f"✗ {night.failed_task} failed" in output, output[-3000:]
    assert "▶ train started" not in output
    for text in night.texts:
        assert text in output, text
    assert pointer(night.home / "snapshots", dataset) == night.last_good
    assert registry_state(dataset.model, f"sqlite:///{night.home / 'mlflow.db'}") == {
        "versions": ["1"],
        "champion": "1",
    }
    assert not list((night.home / "snapshots" / dataset.name).glob(".staging-*"))
    if night.failed_task == "validate":
        client = mlflow_client(night.home)
        runs = client.search_runs([client.get_experiment_by_name(dataset.model).experiment_id])
        assert [(r.data.tags["validation_status"], r.data.tags["gate_status"]) for r in runs] == [
            ("failed", "rejected")
        ]


def test_rejected_credentials_fail_at_once_without_retries(nights):
    night = nights["fashion_kaggle_rejects_credentials"]
    assert KEY not in night.done.stdout + night.done.stderr
    # One API call: the task failed at once (a retry cannot fix a wrong key) and never reached validate.
    assert night.kaggle_requests == ["POST http://localhost/api/v1/datasets.DatasetApiService/DownloadDataset"]
    assert "▶ validate started" not in night.done.stdout

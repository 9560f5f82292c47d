"""The ingest stage: snapshots from a source, and what happens when the source fails."""

import pytest
from conftest import mlflow_client, run_stage

from mlops_onnx.snapshots import SnapshotStore
from mlops_onnx.sources import SourceError
from mlops_onnx.tracking import RunContext

MODEL = "fashion_mnist_classifier"


def test_same_data_same_snapshot_hash_on_rerun(settings_env):
    settings = settings_env(MLOPS_DATA_SOURCE="synthetic")
    first = run_stage("ingest", MODEL, RunContext("d", "run-1"))
    again = run_stage("ingest", MODEL, RunContext("d", "run-1"))  # a cleared and re-run task
    assert first["snapshot"] == again["snapshot"] and first["mlflow_run_id"] == again["mlflow_run_id"]
    run = mlflow_client(settings.home).get_run(first["mlflow_run_id"])
    assert run.data.tags["data_hash"] == first["snapshot"] and run.data.tags["stale_data"] == "false"
    assert run.data.metrics["peak_rss_mb_ingest"] > 0 and run.data.metrics["task_seconds_ingest"] > 0


@pytest.fixture
def last_good(settings_env):
    settings = settings_env(MLOPS_DATA_SOURCE="synthetic")
    state = run_stage("ingest", MODEL, RunContext("d", "good"))
    store = SnapshotStore(settings.snapshots_dir)
    store.promote(store.get("fashionmnist", state["snapshot"]))
    return state["snapshot"]


def test_source_failure_fails_the_run_by_default(settings_env, last_good, tmp_path):
    settings_env(MLOPS_DATA_SOURCE="local", MLOPS_DATA_DIR=str(tmp_path / "nowhere"))
    with pytest.raises(SourceError, match="nowhere/fashionmnist does not exist"):
        run_stage("ingest", MODEL, RunContext("d", "broken"))


def test_use_last_good_continues_on_the_last_validated_snapshot(settings_env, last_good, tmp_path):
    settings = settings_env(
        MLOPS_DATA_SOURCE="local", MLOPS_DATA_DIR=str(tmp_path / "nowhere"), MLOPS_ON_SOURCE_FAILURE="use_last_good"
    )
    state = run_stage("ingest", MODEL, RunContext("d", "stale"))
    assert state["snapshot"] == last_good
    tags = mlflow_client(settings.home).get_run(state["mlflow_run_id"]).data.tags
    assert tags["stale_data"] == "true" and "does not exist" in tags["source_error"]

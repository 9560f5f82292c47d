"""Retention over many nights on a real MLflow registry and a real storage folder: the registry and the
storage stay bounded, and nothing an alias or `last_good` points to is ever removed."""

import os
import time

import mlflow
import pytest
from conftest import mlflow_client

from mlops_onnx import retention
from mlops_onnx.models.fashion import SPEC
from mlops_onnx.snapshots import SnapshotStore
from mlops_onnx.storage import Storage
from mlops_onnx.tracking import RunContext

DAG, DAY = "fashion_mnist_nightly", 86400
NIGHTS, KEEP_VERSIONS, KEEP_DAYS = 15, 3, 5


@pytest.fixture
def state(settings_env):
    settings = settings_env(MLOPS_KEEP_VERSIONS=str(KEEP_VERSIONS), MLOPS_KEEP_RUNS_DAYS=str(KEEP_DAYS))
    client = mlflow_client(settings.home)
    client.create_registered_model(SPEC.name)
    return settings, client


def night(settings, client, i: int, day: float) -> tuple[str, str]:
    """What one changed night leaves: a new snapshot (last_good), its run folder, an MLflow run and a version."""
    store = SnapshotStore(settings.snapshots_dir)
    with store.staging("fashionmnist") as staging:
        (staging / "fashion-mnist_train.csv").write_text(f"label,pixel1\n{i % 10},{i}\n")
        snapshot = store.commit("fashionmnist", staging, source="test")
    store.promote(snapshot)
    folder = settings.home / "runs" / DAG / f"night_{i}"
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"x" * 10)
    os.utime(folder / "model.pt", (day, day))
    with mlflow.start_run() as run:
        mlflow.log_text("onnx", "model/model.onnx")
    version = client.create_model_version(
        SPEC.name,
        f"{run.info.artifact_uri}/model",
        run.info.run_id,
        tags={"data_hash": snapshot.content_hash, "airflow_run_id": f"night_{i}"},
    )
    return str(version.version), snapshot.content_hash


def test_many_nights_keep_the_registry_and_the_storage_bounded(state):
    settings, client = state
    start = time.time()
    hashes = {}
    for i in range(NIGHTS):
        today = start + i * DAY
        version, hashes[i] = night(settings, client, i, today)
        if i == 0:  # the first version is champion and is never beaten
            client.set_registered_model_alias(SPEC.name, "champion", version)
        else:
            client.set_registered_model_alias(SPEC.name, "challenger", version)
        report = retention.prune(SPEC, RunContext(DAG, f"night_{i}"), settings, now=today + 60)

        versions = {str(v.version) for v in client.search_model_versions(f"name='{SPEC.name}'")}
        assert "1" in versions and version in versions  # the champion and tonight's challenger stay
        assert len(versions) <= KEEP_VERSIONS + 2  # the newest unaliased ones, the champion and the challenger
        folders = Storage(settings.runs_url).child(DAG).folders()
        assert "night_0" in folders and f"night_{i}" in folders  # the champion's run folder stays
        assert len(folders) <= KEEP_DAYS + 2
        published = SnapshotStore(settings.snapshots_dir).published("fashionmnist")
        assert hashes[0] in published and hashes[i] in published  # the champion's data and last_good
        assert len(published) <= KEEP_DAYS + KEEP_VERSIONS + 2
        assert report["versions_kept"] == len(versions)

    # After the last night: exactly what the rules keep.
    newest = {str(v) for v in range(NIGHTS - KEEP_VERSIONS, NIGHTS + 1)}  # the challenger and 3 before it
    assert {str(v.version) for v in client.search_model_versions(f"name='{SPEC.name}'")} == {"1"} | newest
    assert set(Storage(settings.runs_url).child(DAG).folders()) == {"night_0"} | {
        f"night_{i}" for i in range(NIGHTS) if i >= NIGHTS - KEEP_DAYS
    }  # younger than KEEP_DAYS
    pruned = client.search_runs(
        [client.get_experiment_by_name("Default").experiment_id], filter_string="tags.pruned_version = '2'"
    )
    assert len(pruned) == 1  # the deleted version's run stays, saying which version it was
    kept_data = {hashes[0]} | {hashes[int(v) - 1] for v in newest}
    assert set(SnapshotStore(settings.snapshots_dir).published("fashionmnist")) >= kept_data
    assert not (settings.home / "snapshots" / "fashionmnist" / hashes[1]).exists()

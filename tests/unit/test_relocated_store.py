"""`tracking.relocate_store`: a home's MLflow store, copied elsewhere, points at the copy's artifacts once
`tracking.configure` runs there; a store outside the home (another home's, a server) is never rewritten."""

import shutil
from pathlib import Path

import mlflow
from conftest import mlflow_client

from mlops_onnx import tracking
from mlops_onnx.settings import get_settings


def make_store(settings_env, home):
    settings = settings_env(MLOPS_HOME=str(home))
    tracking.configure(settings)
    experiment = tracking.experiment_id("fashion_mnist_classifier", settings)
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_text("hello", "reports/note.txt")
    return run.info.run_id


def test_a_copied_store_points_at_the_copy_and_others_are_left_alone(settings_env, tmp_path, monkeypatch):
    original, copy = tmp_path / "a" / "home", tmp_path / "b" / "home"
    run_id = make_store(settings_env, original)
    shutil.copytree(original, copy)

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri exported the original's
    settings = settings_env(MLOPS_HOME=str(copy))
    tracking.configure(settings)
    client = mlflow_client(copy)
    assert client.get_run(run_id).info.artifact_uri.startswith((copy / "mlartifacts").as_uri() + "/")
    assert client.get_experiment_by_name("fashion_mnist_classifier").artifact_location.startswith(copy.as_uri())
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="reports/note.txt", dst_path=str(tmp_path))
    assert Path(path).read_text() == "hello"
    assert tracking.relocate_store(copy / "mlflow.db", settings) == []  # done once

    # a home whose tracking URI names another home's store: that store is not this home's to rewrite
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{original / 'mlflow.db'}")
    other = settings_env(MLOPS_HOME=str(tmp_path / "c" / "home"))
    assert tracking.relocate_store(original / "mlflow.db", other) == []
    assert mlflow_client(original).get_run(run_id).info.artifact_uri.startswith(original.as_uri())
    get_settings.cache_clear()

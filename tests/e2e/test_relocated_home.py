"""A home copied elsewhere (a backup restored on another path, a second environment made from the first) runs
its nights on its own files: Airflow's metadata DB and logs and MLflow's artifact locations follow the home,
and the original is left untouched, file for file."""

import shutil

import pytest
from conftest import mlflow_client, pipeline_env, run_dag, write_fashion_sample

pytestmark = pytest.mark.e2e
DAG_ID, MODEL = "fashion_mnist_nightly", "fashion_mnist_classifier"


def files(root) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_a_copied_home_reads_and_writes_only_its_own_files(tmp_path):
    data = write_fashion_sample(tmp_path / "data").parent
    small = {"MLOPS_EPOCHS": "1", "MLOPS_BENCH_RUNS": "3", "MLOPS_TASK_RETRIES": "0"}
    original, copy = tmp_path / "original" / "home", tmp_path / "copy" / "home"
    done = run_dag(DAG_ID, pipeline_env(original, data_dir=data, **small))
    assert done.returncode == 0, done.stdout[-3000:]
    shutil.copytree(original, copy, symlinks=True)
    before = files(original)

    done = run_dag(DAG_ID, pipeline_env(copy, data_dir=data, **small), conf={"force_retrain": True})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert files(original) == before  # not a byte written, nothing added

    client = mlflow_client(copy)
    experiment = client.get_experiment_by_name(MODEL)
    assert experiment.artifact_location == (copy / "mlartifacts" / MODEL).as_uri()
    for number in ("1", "2"):  # the copied version and tonight's
        version = client.get_model_version(MODEL, number)
        model_id = version.model_id or version.source.rstrip("/").split("/")[-1]  # source: models:/<model id>
        location = client.get_logged_model(model_id).artifact_location
        assert location.startswith(copy.as_uri() + "/"), location
        run = client.get_run(version.run_id)
        assert run.info.artifact_uri.startswith(copy.as_uri() + "/")
        assert client.list_artifacts(run.info.run_id, "reports"), f"v{number}'s run artifacts unreadable"
    assert (dag_runs(original), dag_runs(copy)) == (1, 2)  # tonight's run is in the copy's metadata DB alone


def dag_runs(home) -> int:
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(f"file:{home / 'airflow' / 'airflow.db'}?mode=ro", uri=True)) as db:
        return db.execute("select count(*) from dag_run").fetchone()[0]

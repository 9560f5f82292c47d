"""Re-runs for the same night are idempotent: re-running tasks of a DAG run (as after `airflow tasks
clear`) and re-running the whole run for the same logical date (`airflow dags test` again, which Airflow
gives a new run id, and which finds nothing changed) keep the same snapshot hash and never register a
second model version."""

import pytest
from conftest import latest_run, mlflow_client
from fault_support import FASHION, FASHION_DAG, dags_test, small_env, tasks_test

pytestmark = pytest.mark.e2e
LOGICAL_DATE = "2026-11-02"


def test_rerunning_tasks_or_the_whole_night_registers_one_version_from_one_snapshot(tmp_path):
    home = tmp_path / "home"
    env = small_env(home)
    first = dags_test(FASHION_DAG, env, LOGICAL_DATE)
    assert first.returncode == 0, first.stdout[-3000:]
    client = mlflow_client(home)
    night = latest_run(client, FASHION, architecture="cnn")
    data_hash, airflow_run_id = night.data.tags["data_hash"], night.data.tags["airflow_run_id"]
    assert night.data.tags["airflow_logical_date"].startswith(LOGICAL_DATE)

    for task in ("ingest", "gate_and_register"):  # cleared and re-run inside the same DAG run
        again = tasks_test(FASHION_DAG, task, airflow_run_id, env)
        assert again.returncode == 0, again.stdout[-3000:]
    assert (
        latest_run(client, FASHION, architecture="cnn").info.run_id == night.info.run_id
    )  # the same MLflow run, reopened

    rerun = dags_test(FASHION_DAG, env, LOGICAL_DATE)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    second = latest_run(client, FASHION, architecture="cnn")
    assert second.info.run_id != night.info.run_id
    assert second.data.tags["airflow_run_id"] != airflow_run_id  # Airflow's new run for the same night
    assert second.data.tags["data_hash"] == data_hash
    assert second.data.tags["promotion_decision"] == "skipped_unchanged"
    assert second.data.tags["promotion_reason"].startswith(f"unchanged since run {airflow_run_id}")
    assert "version 1, first_champion" in second.data.tags["promotion_reason"]

    versions = client.search_model_versions(f"name='{FASHION}'")
    assert [str(v.version) for v in versions] == ["1"] and versions[0].run_id == night.info.run_id
    assert client.get_model_version(FASHION, "1").aliases == ["champion"]  # not also made its own challenger
    snapshots = [p.name for p in (home / "snapshots" / "fashionmnist").iterdir() if p.is_dir()]
    assert snapshots == [data_hash]


def test_a_retried_registration_finds_its_version_and_leaves_its_aliases_alone(settings_env, exported_cnn, tmp_path):
    from mlops_onnx import registry, tracking
    from mlops_onnx.models.fashion import SPEC
    from mlops_onnx.tracking import RunContext

    settings = settings_env(MLOPS_DATA_SOURCE="synthetic", MLOPS_GATE_FASHION_MNIST_CLASSIFIER="0.5")
    (tmp_path / "reports").mkdir()
    state = {
        "validation": "passed",
        "parity": {"fp32": True},
        "metrics": {"test_accuracy": 0.9},
        "onnx_fp32": str(exported_cnn[1]),
        "snapshot": "ab" * 32,
        "data_source": "synthetic",
        "workdir": str(tmp_path),
    }
    night = RunContext(FASHION_DAG, "scheduled__2026-11-02", logical_date="2026-11-02T00:00:00+00:00")
    rerun = RunContext(FASHION_DAG, "manual__rerun", logical_date=night.logical_date)
    results = [
        registry.gate_and_register(
            SPEC, ctx, state | {"mlflow_run_id": tracking.find_or_create_run(FASHION, ctx, settings)}, settings
        )
        for ctx in (night, night, rerun)
    ]
    assert [r["version"] for r in results] == ["1", "1", "1"]
    assert [r["aliases"] for r in results] == [["champion"]] * 3
    client = mlflow_client(settings.home)
    assert client.get_model_version(FASHION, "1").aliases == ["champion"]
    assert len(client.search_model_versions(f"name='{FASHION}'")) == 1

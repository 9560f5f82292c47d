"""Re-runs for the same night are idempotent: re-running tasks of a DAG run (as after `airflow tasks
clear`) and re-running the whole run for the same logical date (`airflow dags test` again, which Airflow
gives a new run id) keep the same snapshot hash and never register a second model version."""

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
    night = latest_run(client, FASHION)
    data_hash, airflow_run_id = night.data.tags["data_hash"], night.data.tags["airflow_run_id"]
    assert night.data.tags["airflow_logical_date"].startswith(LOGICAL_DATE)

    for task in ("ingest", "gate_and_register"):  # cleared and re-run inside the same DAG run
        again = tasks_test(FASHION_DAG, task, airflow_run_id, env)
        assert again.returncode == 0, again.stdout[-3000:]
    assert latest_run(client, FASHION).info.run_id == night.info.run_id  # the same MLflow run, reopened

    rerun = dags_test(FASHION_DAG, env, LOGICAL_DATE)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    second = latest_run(client, FASHION)
    assert second.info.run_id != night.info.run_id
    assert second.data.tags["airflow_run_id"] != airflow_run_id  # Airflow's new run for the same night
    assert second.data.tags["data_hash"] == data_hash
    assert second.data.tags["registered_version"] == "1"
    assert second.data.tags["gate_reason"].startswith("already registered as version 1 for logical date")

    versions = client.search_model_versions(f"name='{FASHION}'")
    assert [str(v.version) for v in versions] == ["1"] and versions[0].run_id == night.info.run_id
    assert str(client.get_model_version_by_alias(FASHION, "champion").version) == "1"
    snapshots = [p.name for p in (home / "snapshots" / "fashionmnist").iterdir() if p.is_dir()]
    assert snapshots == [data_hash]

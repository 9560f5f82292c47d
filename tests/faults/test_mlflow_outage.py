"""MLflow down during logging and during registration: the try fails, Airflow retries with exponential
backoff, and once the server is back the run finishes with exactly one registered version.

A real `mlflow server` (SQLite backend) serves the DAG run. The test-only fault policy
(`airflow_local_settings.py`) kills it twice, in the first try of `export` just before the task
starts logging, and in the first try of `gate_and_register` after the model was logged and just before
the version is created. A watcher restarts the server each time after OUTAGE_SECONDS. MLflow's own HTTP
retries (7 by default, about 4 minutes) are turned off here so that the Airflow retries are what is tested.
"""

from datetime import datetime

import pytest
from fault_support import FASHION, FASHION_DAG, MlflowServer, airflow_tries, dags_test, install_fault_policy, small_env

pytestmark = pytest.mark.e2e
OUTAGE_SECONDS = 4
RETRY_DELAY_SECONDS = 2


def test_mlflow_outage_fails_a_try_and_the_retry_registers_exactly_once(tmp_path):
    from mlflow import MlflowClient

    home = tmp_path / "home"
    server = MlflowServer(tmp_path / "mlflow-server")
    server.start()
    server.restart_after_outages(OUTAGE_SECONDS)
    faults = "export:stop_mlflow_before_start_run,gate_and_register:stop_mlflow_before_register_model"
    env = install_fault_policy(small_env(home), faults)
    env |= {
        "MLFLOW_TRACKING_URI": server.uri,
        "TEST_MLFLOW_PGID_FILE": str(server.pgid_file),
        "MLOPS_TASK_RETRIES": "5",
        "MLOPS_RETRY_DELAY_SECONDS": str(RETRY_DELAY_SECONDS),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    }
    try:
        done = dags_test(FASHION_DAG, env, "2026-11-01")
    finally:
        server.stop()
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "[fault] stopping MLflow just before mlflow.start_run" in output
    assert "[fault] stopping MLflow just before mlflow.register_model" in output
    assert len(server.outages) == 2

    for task in ("candidate.export", "gate_and_register"):
        tries = airflow_tries(env, FASHION_DAG, task)
        assert len(tries) >= 2 and tries[-1]["state"] == "success", (task, tries)
        assert all(t["state"] != "success" for t in tries[:-1]), (task, tries)
        # Exponential backoff: the n-th retry waits at least RETRY_DELAY_SECONDS * 2**(n-1).
        for n, (failed, retry) in enumerate(zip(tries, tries[1:]), start=1):
            waited = datetime.fromisoformat(retry["start_date"]) - datetime.fromisoformat(failed["end_date"])
            assert waited.total_seconds() >= RETRY_DELAY_SECONDS * 2 ** (n - 1) - 0.5, (task, n, tries)

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow-server' / 'mlflow.db'}")
    versions = client.search_model_versions(f"name='{FASHION}'")
    assert len(versions) == 1, [(v.version, v.run_id) for v in versions]
    run = client.get_run(versions[0].run_id)
    assert versions[0].tags["airflow_run_id"] == run.data.tags["airflow_run_id"]
    assert run.data.tags["gate_status"] == "registered" and run.data.tags["registered_version"] == "1"
    assert "parity_fp32_max_abs_diff" in run.data.metrics and "size_onnx_fp32_bytes" in run.data.metrics
    assert str(client.get_model_version_by_alias(FASHION, "champion").version) == "1"

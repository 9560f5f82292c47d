"""Two runs of the same DAG at once, each started with `airflow dags test` (which, unlike the scheduler, does
not hold the second run back behind `max_active_runs=1`): each keeps its own files and both register.
Serialised promotion through the scheduler (one run per DAG, one `gate_and_register` per model in its
registry pool) is shown by the Celery scale-out test; the compare-and-set re-read by
tests/integration/test_decisions.py."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import mlflow_client
from fault_support import BIN, FASHION, FASHION_DAG, small_env

from mlops_onnx.tracking import RunContext

pytestmark = pytest.mark.e2e


def test_two_dag_runs_at_once_keep_their_files_apart_and_both_register(tmp_path):
    import onnx

    home = tmp_path / "home"
    runs = {  # logical date -> settings: a good nightly run and a poor manual one started beside it
        "2026-11-03T02:00:00+00:00": small_env(home, MLOPS_MAX_TRAIN_ROWS="2000", MLOPS_EPOCHS="2"),
        "2026-11-03T02:05:00+00:00": small_env(
            home, MLOPS_MAX_TRAIN_ROWS="300", MLOPS_GATE_FASHION_MNIST_CLASSIFIER="0.05"
        ),
    }
    env = next(iter(runs.values()))
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True)
    for command in (["db", "migrate"], ["dags", "reserialize"]):  # as the DAG processor would have, once
        subprocess.run([str(BIN / "airflow"), *command], env=env, check=True, capture_output=True, timeout=300)
    procs, logs = [], [tmp_path / f"run{i}.log" for i in range(len(runs))]
    for (date, run_env), log in zip(runs.items(), logs):  # the manual run starts once the nightly one ingests
        while procs and not (home / "work" / FASHION_DAG).is_dir():
            assert procs[0].poll() is None, logs[0].read_text()[-3000:]
            time.sleep(0.2)
        with log.open("w") as out:
            procs.append(
                subprocess.Popen(
                    [str(BIN / "airflow"), "dags", "test", FASHION_DAG, date],
                    env=run_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    for proc, log in zip(procs, logs):
        proc.wait(timeout=900)
        sys.stdout.write(log.read_text()[-6000:])
        assert proc.returncode == 0, log.read_text()[-3000:]

    client = mlflow_client(home)
    experiment = client.get_experiment_by_name(FASHION)
    mlflow_runs = client.search_runs([experiment.experiment_id], "tags.architecture = 'cnn'")
    assert len(mlflow_runs) == 2 and len(client.search_runs([experiment.experiment_id])) == 4  # + 2 nights
    workdirs = set()
    for run in mlflow_runs:
        airflow_run_id = run.data.tags["airflow_run_id"]
        workdir = home / "work" / FASHION_DAG / RunContext(FASHION_DAG, airflow_run_id).safe_run_id / "cnn"
        workdirs.add(workdir)
        props = {p.key: p.value for p in onnx.load(str(workdir / "model_fp32.onnx")).metadata_props}
        assert props["airflow_run_id"] == airflow_run_id  # its own export, not overwritten by the other run
        assert json.loads((workdir / "reports" / "parity.json").read_text())["variants"]["fp32"]["passed"]
    assert len(workdirs) == 2

    versions = {v.run_id: v for v in client.search_model_versions(f"name='{FASHION}'")}
    assert set(versions) == {r.info.run_id for r in mlflow_runs}
    decisions = sorted(r.data.tags["promotion_decision"] for r in mlflow_runs)
    assert decisions[0] == "first_champion" and decisions[1] in ("kept_champion", "promoted")

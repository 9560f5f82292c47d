"""Helpers for the fault tests: a real MLflow server that can be killed and restarted, DAG runs with a
logical date, the fault-injection policy, and what Airflow recorded about each try."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from conftest import free_port, pipeline_env, run_dag

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
FASHION_DAG, FASHION = "fashion_mnist_nightly", "fashion_mnist_classifier"


def small_env(home: Path, **extra: str) -> dict[str, str]:
    """A fashion run as small as the pipeline allows (synthetic quick-profile data, 1 epoch on 1,000
    rows): the faults are the point, not the model."""
    return pipeline_env(
        home,
        **{
            "MLOPS_DATA_SOURCE": "synthetic",
            "MLOPS_EPOCHS": "1",
            "MLOPS_MAX_TRAIN_ROWS": "1000",
            "MLOPS_MAX_TEST_ROWS": "400",
            "MLOPS_GATE_FASHION_MNIST_CLASSIFIER": "0.2",
            "MLOPS_BENCH_RUNS": "5",
            "MLOPS_BENCH_WARMUP": "1",
            **extra,
        },
    )


def install_fault_policy(env: dict[str, str], faults: str) -> dict[str, str]:
    """Airflow imports `$AIRFLOW_HOME/config/airflow_local_settings.py`: the test-only fault policy."""
    config = Path(env["AIRFLOW_HOME"]) / "config"
    config.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "airflow_local_settings.py", config / "airflow_local_settings.py")
    return {**env, "TEST_FAULTS": faults}


def _airflow(env: dict[str, str], *args: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "airflow"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def dags_test(
    dag_id: str, env: dict[str, str], logical_date: str | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """`airflow dags test <dag_id> [<logical date>]` on env's state (migrating its metadata DB first)."""
    return run_dag(dag_id, env, timeout=timeout, logical_date=logical_date)


def tasks_test(dag_id: str, task_id: str, run_id: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Re-run one task of an existing DAG run (`airflow tasks test`), as a cleared task is re-run."""
    done = _airflow(env, "tasks", "test", dag_id, task_id, run_id, timeout=300)
    sys.stdout.write(done.stdout[-5000:])
    return done


def airflow_tries(env: dict[str, str], dag_id: str, task_id: str) -> list[dict]:
    """Every try of a task, oldest first (earlier tries live in `task_instance_history`)."""
    db = sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")
    db.row_factory = sqlite3.Row
    query = "select run_id, try_number, state, start_date, end_date from {} where dag_id = ? and task_id = ?"
    rows = [
        dict(r)
        for table in ("task_instance_history", "task_instance")
        for r in db.execute(query.format(table), (dag_id, task_id))
    ]
    db.close()
    return sorted(rows, key=lambda r: (r["run_id"], r["try_number"]))


class MlflowServer:
    """`mlflow server` on a free port with a SQLite backend; `restart_after_outages` restarts it whenever
    it dies (the fault policy kills it), `outage_seconds` after it went down."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.pgid_file = home / "mlflow-server.pgid"
        self.proc: subprocess.Popen | None = None
        self.outages: list[tuple[float, float]] = []  # (went down, back up) in time.monotonic()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        log = (self.home / "mlflow-server.log").open("a")
        self.proc = subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.home / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.home / "mlartifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid_file.write_text(str(self.proc.pid))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"mlflow server on {self.uri} did not start; see {self.home / 'mlflow-server.log'}")

    def restart_after_outages(self, outage_seconds: float) -> None:
        def watch() -> None:
            while not self._stop.wait(0.2):
                if self.proc.poll() is not None:
                    down = time.monotonic()
                    time.sleep(outage_seconds)
                    self.start()
                    self.outages.append((down, time.monotonic()))

        self._watcher = threading.Thread(target=watch, daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()

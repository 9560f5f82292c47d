"""`make up` / `make down`: Airflow 3 and the MLflow server on a temporary state, as a user starts them."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import requests
from conftest import REPO_ROOT, free_port, pipeline_env

pytestmark = pytest.mark.e2e


def services(command: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlops_onnx.services", command],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )


def api(url: str, token: str | None = None, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body else None,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_up_twice_then_down(tmp_path):
    """With MLOPS_MLFLOW_AUTH on (the browser test runs `make up` with it off)."""
    home = tmp_path / "home"
    ports = {"MLOPS_AIRFLOW_PORT": str(free_port()), "MLOPS_MLFLOW_PORT": str(free_port())}
    env = pipeline_env(home, MLOPS_DATA_SOURCE="synthetic", MLOPS_MLFLOW_AUTH="1", **ports)
    try:
        first = services("up", env)
        assert first.returncode == 0, first.stdout + first.stderr
        pids = {p.name: p.read_text() for p in (home / "run").glob("*.pid")}
        assert set(pids) == {
            "mlflow.pid",
            "airflow-api-server.pid",
            "airflow-scheduler.pid",
            "airflow-dag-processor.pid",
            "airflow-triggerer.pid",
        }

        password_file = home / "airflow" / "passwords.json"
        assert oct(password_file.stat().st_mode & 0o777) == "0o600"
        password = json.loads(password_file.read_text())["admin"]
        assert f"(generated now: {password})" in first.stdout

        second = services("up", env)
        assert second.stdout.count("already running") == 5 and "generated now" not in second.stdout
        assert {p.name: p.read_text() for p in (home / "run").glob("*.pid")} == pids

        airflow = f"http://127.0.0.1:{ports['MLOPS_AIRFLOW_PORT']}"
        token = api(f"{airflow}/auth/token", body={"username": "admin", "password": password})["access_token"]
        dags = {d["dag_id"]: d["is_paused"] for d in api(f"{airflow}/api/v2/dags", token)["dags"]}
        assert dags["fashion_mnist_nightly"] is False
        mlflow = f"http://127.0.0.1:{ports['MLOPS_MLFLOW_PORT']}"
        with urllib.request.urlopen(f"{mlflow}/health", timeout=10) as health:
            assert health.status == 200
        credentials = home / "mlflow-auth" / "credentials.json"
        assert oct(credentials.stat().st_mode & 0o777) == "0o600" and "credentials.json" in first.stdout
        mlflow_passwords = json.loads(credentials.read_text())["passwords"]
        assert not any(p in first.stdout + first.stderr for p in mlflow_passwords.values())
        search = f"{mlflow}/api/2.0/mlflow/experiments/search?max_results=5"
        assert requests.get(search, timeout=30).status_code == 401
        viewer = requests.get(search, auth=("viewer", mlflow_passwords["viewer"]), timeout=30)
        assert viewer.status_code == 200 and "fashion_mnist_classifier" in viewer.text  # created by the setup
        # only the MLflow server's own process holds the admin password; Airflow's (and their tasks) do not
        holders = [
            name
            for name, pid in pids.items()
            if mlflow_passwords["admin"].encode() in Path(f"/proc/{pid}/environ").read_bytes()
        ]
        assert holders == ["mlflow.pid"]
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        for port in ports.values():
            assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening
    finally:
        stopped = services("down", env)
    assert stopped.returncode == 0 and stopped.stdout.count("stopped") == 5
    assert not list((home / "run").glob("*.pid"))
    sessions = {int(pid) for pid in pids.values()}
    survivors = [p for p in os.listdir("/proc") if p.isdigit() and _sid(int(p)) in sessions]
    assert survivors == []  # the scheduler's task workers are gone too


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None

"""MLOPS_PROMOTION_APPROVAL=close through the real services (`make up`: scheduler, API server, MLflow): the
second night's candidate is better but not significantly so, its night waits in Airflow's human-in-the-loop
form, and an approval sent through Airflow's REST API makes it champion with the approver named.

The close call is made certain, not hoped for: the second night trains on three times the images of the
first (so it is better on the shared test rows), and alpha is set so low (1e-300) that no McNemar test on
400 rows can reach it (its smallest p is 0.5**400)."""

import json
import shutil
import time

import pytest
import requests
from conftest import latest_run, mlflow_client, pipeline_env, write_fashion_sample
from test_services import free_port, services

pytestmark = pytest.mark.e2e
DAG, MODEL, TASK = "fashion_mnist_nightly", "fashion_mnist_classifier", "approve_promotion"


class Airflow:
    def __init__(self, url: str, password: str):
        self.url = url
        token = requests.post(f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def __call__(self, method: str, path: str, body: dict | None = None) -> dict:
        response = requests.request(method, f"{self.url}/api/v2{path}", json=body, headers=self.headers, timeout=30)
        assert response.ok, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def trigger(self) -> str:
        return self("POST", f"/dags/{DAG}/dagRuns", {"logical_date": None})["dag_run_id"]

    def wait(self, what: str, check, timeout: float = 900):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := check():
                return found
            time.sleep(3)
        raise TimeoutError(f"{what} after {timeout}s")

    def finished(self, run_id: str) -> str:
        return self.wait(
            f"{run_id} unfinished", lambda: self.state(run_id) if self.state(run_id) in ("success", "failed") else None
        )

    def state(self, run_id: str) -> str:
        return self("GET", f"/dags/{DAG}/dagRuns/{run_id}")["state"]

    def task(self, run_id: str, task_id: str) -> dict:
        return self("GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}")


def test_a_close_call_waits_and_an_approval_through_the_rest_api_promotes(tmp_path):
    home, data = tmp_path / "home", tmp_path / "data"
    write_fashion_sample(data, train_rows=1000, test_rows=400)
    ports = {"MLOPS_AIRFLOW_PORT": str(free_port()), "MLOPS_MLFLOW_PORT": str(free_port())}
    env = pipeline_env(
        home,
        data,
        MLOPS_PROMOTION_APPROVAL="close",
        MLOPS_PROMOTION_ALPHA="1e-300",
        MLOPS_UNPAUSE="none",
        MLOPS_EPOCHS="2",
        MLOPS_BENCH_RUNS="5",
        MLOPS_TASK_RETRIES="0",
        **ports,
    )
    try:
        started = services("up", env)
        assert started.returncode == 0, started.stdout + started.stderr
        password = json.loads((home / "airflow" / "passwords.json").read_text())["admin"]
        airflow = Airflow(f"http://127.0.0.1:{ports['MLOPS_AIRFLOW_PORT']}", password)

        first = airflow.trigger()
        airflow("PATCH", f"/dags/{DAG}", {"is_paused": False})  # unpausing may also start the night's scheduled run
        assert airflow.finished(first) == "success"
        airflow.wait(
            "runs still going",
            lambda: not airflow("GET", f"/dags/{DAG}/dagRuns?state=queued&state=running")["dag_runs"],
        )
        client = mlflow_client(home)
        assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
        assert airflow.task(first, TASK)["state"] == "skipped"  # a first champion is no close call

        shutil.rmtree(data / "fashionmnist")
        write_fashion_sample(data, train_rows=3000, test_rows=400)  # a new snapshot: night 2 retrains
        second = airflow.trigger()
        waiting = airflow.wait(
            f"{TASK} not awaiting input", lambda: (t := airflow.task(second, TASK))["state"] == "awaiting_input" and t
        )
        assert waiting["state"] == "awaiting_input" and airflow.state(second) == "running"
        version = client.get_model_version(MODEL, "2")
        assert version.tags["promotion_decision"] == "awaiting_approval" and version.aliases == ["challenger"]
        form = airflow("GET", f"/dags/{DAG}/dagRuns/{second}/taskInstances/{TASK}/-1/hitlDetails")
        assert form["options"] == ["Approve", "Reject"] and form["defaults"] == ["Reject"]
        assert form["subject"] == f"{MODEL}: make v2 champion? (champion: v1)"
        assert "better but not significantly" in form["body"] and "on the same 400 test rows" in form["body"]
        assert "plots/head_to_head.png" in form["body"] and "(alpha 1e-300)" in form["body"]

        answer = {"chosen_options": ["Approve"], "params_input": {}}
        airflow("PATCH", f"/dags/{DAG}/dagRuns/{second}/taskInstances/{TASK}/-1/hitlDetails", answer)
        assert airflow.finished(second) == "success"
        assert airflow.task(second, "apply_approval")["state"] == "success"
        assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"
        reason = client.get_model_version(MODEL, "2").tags["promotion_reason"]
        assert reason.startswith("Promoted on approval by admin in Airflow: better but not significantly"), reason
        night = latest_run(client, MODEL)
        assert night.data.tags["approved_by"] == "admin" and night.data.tags["promotion_decision"] == "promoted"
        assert client.get_model_version(MODEL, "1").tags["displaced_by_version"] == "2"
    finally:
        services("down", env)

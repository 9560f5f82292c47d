"""A user's day in a real browser: `make up`, log in to Airflow, trigger the nightly DAG from the
UI, follow the plugin's link to the MLflow UI and see the registered model version there.

Headless Debian Chromium driven by Playwright; screenshots go to reports/test-artifacts/.
"""

import json
import re
import shutil
import time
import urllib.request

import pytest
from conftest import REPO_ROOT, pipeline_env
from test_services import api, free_port, services

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = REPO_ROOT / "reports" / "test-artifacts"
DAG_ID = "fashion_mnist_nightly"
# Flags for a closed network: no background requests to Google's hosts.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def wait_for_run(airflow: str, token: str, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = api(f"{airflow}/api/v2/dags/{DAG_ID}/dagRuns?run_type=manual", token)["dag_runs"]
        if runs and runs[0]["state"] in ("success", "failed"):
            return runs[0]
        time.sleep(5)
    raise TimeoutError(f"no finished manual run of {DAG_ID} after {timeout}s")


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian's chromium is not installed (make setup installs it)"
)
def test_trigger_in_airflow_ui_and_find_the_model_in_mlflow_ui(tmp_path):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "home"
    ports = {"MLOPS_AIRFLOW_PORT": str(free_port()), "MLOPS_MLFLOW_PORT": str(free_port())}
    env = pipeline_env(
        home,
        MLOPS_DATA_SOURCE="synthetic",
        MLOPS_UNPAUSE="none",
        # The UI and its links are tested here, not the model: one epoch on 600 of the (deliberately hard)
        # synthetic images reaches about 0.4 accuracy, so the gate sits at 0.2 (chance is 0.1).
        MLOPS_GATE_FASHION_MNIST_CLASSIFIER="0.2",
        MLOPS_EPOCHS="1",
        MLOPS_MAX_TRAIN_ROWS="600",
        MLOPS_MAX_TEST_ROWS="300",
        MLOPS_BENCH_RUNS="5",
        **ports,
    )
    airflow = f"http://127.0.0.1:{ports['MLOPS_AIRFLOW_PORT']}"
    try:
        started = services("up", env)
        assert started.returncode == 0, started.stdout + started.stderr
        password = json.loads((home / "airflow" / "passwords.json").read_text())["admin"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})

            page.goto(airflow)
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            # The login page's URL already matches the site: wait until the sign-in redirect has left it.
            page.wait_for_url(lambda url: "/auth/login" not in url, timeout=60000)
            page.wait_for_load_state("networkidle")
            page.goto(f"{airflow}/dags/{DAG_ID}")
            page.get_by_role("button", name="Trigger").click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_text(f"Unpause {DAG_ID} on trigger").wait_for()
            # Unpausing also starts the scheduled run, which may train first; without "Force retrain" this
            # manual run on the same data would then skip training as unchanged, leaving no version to follow.
            force = dialog.get_by_role("checkbox", name="Force retrain")  # the param's switch
            dialog.locator('[id="switch:element_force_retrain:control"]').click()
            assert force.is_checked()
            page.screenshot(path=str(SHOTS / "1-airflow-trigger.png"))
            dialog.get_by_role("button", name="Trigger").click()

            token = api(f"{airflow}/auth/token", body={"username": "admin", "password": password})["access_token"]
            run = wait_for_run(airflow, token)
            assert run["state"] == "success", run
            assert run["conf"].get("force_retrain") is True, run  # the trigger form's switch reached the run

            page.goto(f"{airflow}/dags/{DAG_ID}/runs/{run['dag_run_id']}/tasks/gate_and_register")
            page.get_by_text("Details", exact=True).click()  # the task's tab holding "Extra Links"
            run_link = page.get_by_role("link", name="MLflow run")
            run_link.wait_for(timeout=30000)
            page.screenshot(path=str(SHOTS / "2-airflow-extra-links.png"))
            mlflow_run_url = run_link.get_attribute("href")
            model_url = page.get_by_role("link", name="MLflow model").get_attribute("href")
            assert mlflow_run_url.startswith(f"http://127.0.0.1:{ports['MLOPS_MLFLOW_PORT']}/#/experiments/")

            page.goto(mlflow_run_url)
            page.get_by_text(f"{DAG_ID}__manual", exact=False).first.wait_for(timeout=60000)
            page.screenshot(path=str(SHOTS / "3-mlflow-run.png"))

            # The scheduled run that unpausing starts may register first: this run's version is in the link.
            match = re.search(r"/#/models/fashion_mnist_classifier/versions/(\d+)$", model_url)
            assert match, model_url
            page.goto(model_url)
            page.get_by_text(f"Version {match.group(1)}").first.wait_for(timeout=60000)
            page.screenshot(path=str(SHOTS / "4-mlflow-model-version.png"))
            browser.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['MLOPS_MLFLOW_PORT']}/health", timeout=10) as health:
            assert health.status == 200
    finally:
        services("down", env)

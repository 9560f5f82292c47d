"""A night whose would-be first champion is registered with a broken serving file (the test-only fault policy,
just before `gate_and_register`): parity and the head-to-head ran on the good files, but the server trial
cannot load the version (the API's fresh server for fake news, the dashboard's loader in a fresh interpreter
for stocks), so it is `rejected_in_server`, with the reason, and `champion` does not move: nothing new is
served."""

import pytest
from conftest import latest_run, mlflow_client, pipeline_env
from fault_support import dags_test, install_fault_policy

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("dag", "model", "architecture", "why"),
    [
        ("fake_news_nightly", "fake_news_classifier", "lstm", "did not come up in the server"),
        # naive: no training, and never worse than itself, so it passes the gate on any archive
        ("stock_forecast_nightly", "stock_forecaster", "naive", "did not load in the dashboard's code"),
    ],
    ids=["api", "dashboard"],
)
def test_a_version_the_server_cannot_load_never_becomes_champion(tmp_path, dag, model, architecture, why):
    home = tmp_path / "home"
    env = pipeline_env(
        home, MLOPS_TASK_RETRIES="0", MLOPS_TRIAL_START_SECONDS="30", MLOPS_CANDIDATES_STOCKS=architecture
    )
    done = dags_test(dag, install_fault_policy(env, "gate_and_register:break_serving"), "2026-11-05")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]  # a decided night: the version is registered, refused
    assert "[fault] registering broken-" in output
    client = mlflow_client(home)
    version = client.get_model_version(model, "1")
    assert version.aliases == [] and version.tags["promotion_decision"] == "rejected_in_server"
    assert version.tags["promotion_reason"].startswith(f"Rejected in the server: v1 {why}")
    if architecture == "lstm":
        assert "load_failed" in version.tags["promotion_reason"]  # the API's /health reason code
    else:
        assert "onnxruntime" in version.tags["promotion_reason"].lower(), version.tags["promotion_reason"]
    assert version.description.endswith("No alias: champion did not move.")
    with pytest.raises(Exception, match="alias"):
        client.get_model_version_by_alias(model, "champion")
    run = latest_run(client, model, architecture=architecture)
    assert run.data.tags["server_trial_status"] == "failed" and run.data.tags["registered_alias"] == "none"
    assert run.data.metrics["server_trial_seconds"] > 0
    night = latest_run(client, model)
    assert night.data.tags["promotion_decision"] == "rejected_in_server"

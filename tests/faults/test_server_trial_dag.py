"""A fake-news night whose would-be first champion is registered with a broken serving file (the test-only
fault policy, just before `gate_and_register`): parity and the head-to-head ran on the good files, but the
server trial cannot load the version, so it is `rejected_in_server`, with the reason, and `champion` does not
move: the API has nothing new to serve."""

import pytest
from conftest import latest_run, mlflow_client, pipeline_env
from fault_support import dags_test, install_fault_policy

pytestmark = pytest.mark.e2e
DAG, MODEL = "fake_news_nightly", "fake_news_classifier"


def test_a_version_the_server_cannot_load_never_becomes_champion(tmp_path):
    home = tmp_path / "home"
    env = install_fault_policy(
        pipeline_env(home, MLOPS_TASK_RETRIES="0", MLOPS_TRIAL_START_SECONDS="30"), "gate_and_register:break_serving"
    )
    done = dags_test(DAG, env, "2026-11-05")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]  # a decided night: the version is registered, refused
    assert "[fault] registering broken-" in output
    client = mlflow_client(home)
    version = client.get_model_version(MODEL, "1")
    assert version.aliases == [] and version.tags["promotion_decision"] == "rejected_in_server"
    assert version.tags["promotion_reason"].startswith("Rejected in the server: v1 did not come up in the server")
    assert "load_failed" in version.tags["promotion_reason"]
    assert version.description.endswith("No alias: champion did not move.")
    with pytest.raises(Exception, match="alias"):
        client.get_model_version_by_alias(MODEL, "champion")
    run = latest_run(client, MODEL, architecture="lstm")
    assert run.data.tags["server_trial_status"] == "failed" and run.data.tags["registered_alias"] == "none"
    assert run.data.metrics["server_trial_seconds"] > 0
    night = latest_run(client, MODEL)
    assert night.data.tags["promotion_decision"] == "rejected_in_server"

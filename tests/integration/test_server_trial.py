"""The server trial (`serving.trial`): a version answers test articles in a fresh uvicorn process pinned to it,
and matches the same registered files run offline; one whose serving file cannot load fails, saying why."""

import pytest
from conftest import mlflow_client
from serving_support import NAME, TEXTS, register

from mlops_onnx.serving.trial import try_in_server

pytestmark = pytest.mark.slow  # real uvicorn subprocesses

ARTICLES = [{"title": "", "text": t} for t in TEXTS] + [{"title": "Senate", "text": "the bill passed 52-48"}]


def test_a_sound_version_passes_and_an_unloadable_one_fails(settings_env, tmp_path):
    settings = settings_env(MLOPS_TRIAL_START_SECONDS="60")
    home = settings.home
    register(home, tmp_path / "v1", scale=0.5)
    register(home, tmp_path / "v2", scale=-3.0, alias="challenger", broken=True)  # champion stays v1
    mlflow_client(home)

    trial = try_in_server(NAME, "1", ARTICLES, settings, atol=1e-4)
    assert trial.passed, trial.reason
    assert trial.rows == len(ARTICLES) and trial.max_abs_diff <= 1e-6 and 0 < trial.p99_ms < 500
    assert f"{len(ARTICLES)} test rows over HTTP" in trial.reason
    assert set(trial.metrics()) == {
        "server_trial_rows",
        "server_trial_max_abs_diff",
        "server_trial_p99_ms",
        "server_trial_seconds",
    }

    broken = try_in_server(NAME, "2", ARTICLES[:1], settings_env(MLOPS_TRIAL_START_SECONDS="20"), atol=1e-4)
    assert not broken.passed and broken.rows == 0
    assert broken.reason.startswith("v2 did not come up in the server") and "load_failed" in broken.reason

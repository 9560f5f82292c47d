"""The scikit-learn floors as candidates, end to end through Airflow (issue 25): each nightly DAG with its neural
candidate and its floor; the floor goes through every stage like any candidate, and the champion is the
simplest candidate unless a more complex one beat it by the paired test on the shared validation rows."""

import json
from pathlib import Path
from types import SimpleNamespace

import conftest
import pytest
from conftest import mlflow_client, pipeline_env, run_dag

pytestmark = pytest.mark.e2e
# (DAG, model, neural candidate, floor)
NIGHTS = {
    "fashion": ("fashion_mnist_nightly", "fashion_mnist_classifier", "cnn", "logreg"),
    "fake_news": ("fake_news_nightly", "fake_news_classifier", "lstm", "tfidf"),
}


@pytest.fixture(scope="module", params=list(NIGHTS))
def night(request, tmp_path_factory):
    """One night of the task with its neural candidate and its floor (MLOPS_CANDIDATES_<TASK>=<neural>,<floor>)."""
    dag_id, model, neural, floor = NIGHTS[request.param]
    home = tmp_path_factory.mktemp(dag_id)
    env = pipeline_env(home, **{f"MLOPS_CANDIDATES_{request.param.upper()}": f"{neural},{floor}"})
    done = run_dag(dag_id, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return SimpleNamespace(home=home, model=model, neural=neural, floor=floor, client=mlflow_client(home))


def test_the_floor_goes_through_every_stage_like_any_candidate(night):
    run = conftest.latest_run(night.client, night.model, architecture=night.floor)
    metrics, tags = run.data.metrics, run.data.tags
    assert tags["parity_status"] == "passed" and metrics["parity_fp32_max_abs_diff"] <= 1e-4
    assert metrics["parity_fp32_agreement"] == 1.0
    assert metrics["bench_cpu_onnx_fp32_b1_p50_ms"] > 0 and metrics["bench_cpu_native_eager_b1_p50_ms"] > 0
    assert not [k for k in tags if k.startswith("variant_")]  # fp32 only: nothing else worth building
    assert {f"task_seconds_{stage}" for stage in ("train", "export", "parity", "benchmark_cpu")} <= set(metrics)
    assert metrics["choice_rows"] > 0 and metrics["onnx_parameters"] > 0
    assert tags["choice_reason"]


def test_the_floor_serves_unless_a_more_complex_candidate_beats_it_by_the_paired_test(night, tmp_path):
    night_run = conftest.latest_run(night.client, night.model)
    path = night.client.download_artifacts(night_run.info.run_id, "reports/candidate_choice.json", str(tmp_path))
    choice = json.loads(Path(path).read_text())
    assert set(choice["parameters"]) == {night.neural, night.floor}
    assert choice["parameters"][night.floor] < choice["parameters"][night.neural]  # the floor is the simpler
    champion = night.client.get_model_version_by_alias(night.model, "champion")
    assert champion.tags["architecture"] == choice["chosen"]
    if choice["chosen"] == night.neural:  # it had to beat the floor clearly on the validation rows
        [test] = choice["tests"]
        assert test["complex"] == night.neural and test["p_value"] < 0.05
        assert choice["scores"][night.neural] > choice["scores"][night.floor]


def test_the_fake_news_champion_serves_text_whichever_candidate_it_is(night):
    """The API's worker loads the champion (the floor or the LSTM) from the registry alone and scores text."""
    if night.model != "fake_news_classifier":
        pytest.skip("the API serves the fake-news task")
    from mlops_onnx.serving.holder import load_version

    version = night.client.get_model_version_by_alias(night.model, "champion")
    loaded = load_version(night.model, version, "champion")
    articles = [
        SimpleNamespace(title="Senate passes the budget", text="WASHINGTON (Reuters) - The Senate voted on Tuesday."),
        SimpleNamespace(title="SHOCKING: you won't believe this", text="Watch the video! They don't want you to know."),
    ]
    probability = loaded.predict(articles)
    assert probability.shape == (2,) and ((probability >= 0) & (probability <= 1)).all()

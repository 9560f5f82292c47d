"""The nightly fake-news DAG end to end through Airflow (`airflow dags test`), real MLflow."""

import json
import shutil
from pathlib import Path

import conftest
import numpy as np
import pandas as pd
import pytest
from conftest import HAS_SHARED_DATA, SHARED_DATA, mlflow_client, pipeline_env, run_dag

pytestmark = pytest.mark.e2e
DAG_ID, MODEL = "fake_news_nightly", "fake_news_classifier"
VARIANTS = ("fp32", "int8_dynamic", "fp16")
NEWS = SHARED_DATA / "fake-and-real-news-dataset"


def latest_run(client, index: int = 0):
    """The newest night's LSTM candidate run (what trained, exported, benchmarked and registered)."""
    return conftest.latest_run(client, MODEL, index, architecture="lstm")


def test_registers_a_traceable_champion_with_its_tokenizer(home, first_run):
    client = mlflow_client(home)
    version = client.get_model_version_by_alias(MODEL, "champion")
    run = latest_run(client)
    assert str(version.version) == "1" and version.run_id == run.info.run_id
    tags = version.tags
    assert tags["airflow_dag_id"] == DAG_ID and tags["parity_status"] == "passed"
    assert tags["data_hash"] == run.data.tags["data_hash"] and tags["serving_variant"] in VARIANTS
    assert float(tags["test_f1"]) == pytest.approx(run.data.metrics["test_f1"], abs=1e-6)
    # it answered tonight's test articles in a real server, pinned to it, before it became champion
    assert run.data.tags["server_trial_status"] == "passed", run.data.tags.get("server_trial")
    assert run.data.metrics["server_trial_rows"] >= 50 and run.data.metrics["server_trial_max_abs_diff"] <= 1e-4
    paths = {
        a.path
        for folder in ("reports", "plots", "model", "model/preprocessing", "preprocessing")
        for a in client.list_artifacts(run.info.run_id, folder)
    }
    for expected in (
        "preprocessing/tokenizer.json",
        "model/preprocessing/tokenizer.json",
        "model/model.onnx",
        "plots/confusion_matrix.png",
        "reports/onnx_graph.json",
        "reports/parity.json",
        "reports/benchmark_cpu.json",
        "reports/validation.json",
    ):
        assert expected in paths, sorted(paths)


def test_graph_is_a_fused_lstm(home, first_run):
    import mlflow

    run = latest_run(mlflow_client(home))
    path = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="reports/onnx_graph.json", dst_path=str(home / "graph")
    )
    graph = json.loads(Path(path).read_text())
    assert "LSTM" in graph["op_types"] and "Loop" not in graph["op_types"] and graph["opset"] >= 17
    assert run.data.params["recurrent_layer"] == "LSTM" and run.data.params["onnx_input"] == "tokens"


def test_run_carries_leakage_probe_liar_parity_and_benchmarks(home, first_run):
    client = mlflow_client(home)
    run = latest_run(client)
    metrics, tags = run.data.metrics, run.data.tags
    for key in (
        "test_accuracy",
        "test_precision",
        "test_recall",
        "test_roc_auc",
        "test_accuracy_raw_text",
        "leakage_probe_subject_date_accuracy",
        "leakage_probe_date_accuracy",
        "leakage_probe_reuters_marker_accuracy",
        "liar_accuracy",
        "liar_f1",
    ):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["test_f1"] >= 0.5 and metrics["liar_rows"] > 0 and metrics["dedup_exact_rows"] >= 1
    assert metrics["parity_fp32_max_abs_diff"] <= 1e-4 and metrics["parity_fp32_agreement"] == 1.0
    for variant in VARIANTS[1:]:
        assert f"parity_{variant}_agreement" in metrics, variant
    native = tags["bench_cpu_native_path"]  # the fastest of eager, tf.function and predict, probed at batch 1
    for batch in (1, 64):
        for variant in (native, "onnx_fp32"):
            assert metrics[f"bench_cpu_{variant}_b{batch}_p50_ms"] > 0, variant
            assert metrics[f"bench_cpu_{variant}_b{batch}_p99_ms"] > 0, variant
    natives = [k for k in metrics if k.startswith("bench_cpu_native_") and k.endswith("_b1_p50_ms")]
    assert natives == [f"bench_cpu_{native}_b1_p50_ms"]  # only the fastest native path is timed in full
    passing = [v for v in VARIANTS[1:] if metrics[f"parity_{v}_passed"] == 1.0]
    for variant in passing:
        assert metrics[f"bench_cpu_onnx_{variant}_b64_throughput_per_s"] > 0, variant
    assert tags["validation_status"] == "passed" and tags["gate_status"] == "registered"
    night = conftest.latest_run(client, MODEL).data.metrics  # the data's numbers are the night's
    assert night["data_rows_Fake"] > 0 and night["data_rows_True"] > 0
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == list(range(1, len(history) + 1))


def test_registered_model_scores_text_through_the_registered_tokenizer(home, first_run):
    import mlflow
    import onnx

    from mlops_onnx.runtime import make_session
    from mlops_onnx.text import Tokenizer, clean_text

    version = mlflow_client(home).get_model_version_by_alias(MODEL, "champion")
    # The registry keeps preprocessing files in the version's run, under model/preprocessing/.
    tokenizer = Tokenizer.load(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=version.run_id,
                artifact_path="model/preprocessing/tokenizer.json",
                dst_path=str(home / "champion"),
            )
        )
    )
    path = home / "champion.onnx"
    onnx.save(mlflow.onnx.load_model(f"models:/{MODEL}@champion"), str(path))
    ids = tokenizer.encode(
        [
            clean_text("Senate passes the budget", "WASHINGTON (Reuters) - The Senate voted."),
            clean_text("SHOCKING: you won't believe this", "Watch the video!"),
        ]
    )
    out = make_session(path).run(None, {"tokens": ids})[0]
    assert out.shape == (2, 1) and np.all((out >= 0) & (out <= 1))


def small_news_folder(root):
    """300 rows of each class file (the real sample when present), in Kaggle's folder layout, no LIAR."""
    folder = root / "fake-and-real-news-dataset"
    folder.mkdir(parents=True)
    if HAS_SHARED_DATA and (NEWS / "Fake.csv").is_file():
        for name in ("Fake.csv", "True.csv"):
            pd.read_csv(NEWS / name, dtype=str, keep_default_na=False).head(300).to_csv(folder / name, index=False)
    else:
        from types import SimpleNamespace

        from mlops_onnx.sources.synthetic_news import generate_news

        generate_news(folder, np.random.default_rng(0), SimpleNamespace(synthetic_size="small"))
    return folder


# One bad file through a DAG run; every other kind is checked at the stages (tests/faults/test_bad_input.py).
@pytest.mark.parametrize("problem", ["cp1252"])
def test_bad_input_stops_at_validate_and_registers_nothing(tmp_path, problem):
    folder = small_news_folder(tmp_path / "data")
    fake = folder / "Fake.csv"
    if problem == "missing_text_column":
        pd.read_csv(fake, dtype=str, keep_default_na=False).drop(columns=["text"]).to_csv(fake, index=False)
        expected = "Fake.csv has no 'text' column"
    elif problem == "empty_file":
        fake.write_bytes(b"")
        expected = "Fake.csv is empty (0 bytes"
    else:
        frame = pd.read_csv(fake, dtype=str, keep_default_na=False)
        frame.loc[4, "text"] = "Caf\u00e9 owners said \u2018no\u2019"
        frame.to_csv(fake, index=False, encoding="cp1252", errors="replace")
        expected = "Fake.csv is not valid UTF-8"

    home = tmp_path / "home"
    done = run_dag(DAG_ID, pipeline_env(home, data_dir=tmp_path / "data"))
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "validate failed" in output and expected in output
    if problem == "cp1252":
        assert "column 'text'" in output
    assert "▶ train started" not in output
    client = mlflow_client(home)
    assert client.search_registered_models() == []
    run = conftest.latest_run(client, MODEL)  # the night's run: no candidate ever started
    assert run.data.tags["validation_status"] == "failed" and run.data.tags["gate_status"] == "rejected"
    assert not (home / "snapshots" / "fake_news" / "last_good.json").exists()
    shutil.rmtree(home, ignore_errors=True)

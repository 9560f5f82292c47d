"""The nightly stock forecaster DAG end to end through Airflow (`airflow dags test`), real MLflow.

The gate is the test MASE (validation picked the weights): the default rule (MASE ≤ 1.0, not worse than
naive on the test days). On an archive whose returns are predictable (AR(1), φ = 0.9) two candidates (the
LSTM and the Transformer) train side by side and the better one must beat naive and be registered as the
first champion; on the sample, under a stricter threshold (0.0001), the night must be rejected with a
reason that names the MASE and register nothing. On the sample with the baselines (naive, drift, ETS) as
candidates beside the LSTM, every one of them goes through every stage, the night's choice compares them
all on the same validation rows, and the chosen one is registered and served like any model.
"""

import json

import conftest
import numpy as np
import pandas as pd
import pytest
from conftest import HAS_SHARED_DATA, mlflow_client, pipeline_env, run_dag, settings_with

pytestmark = pytest.mark.e2e
DAG_ID, MODEL = "stock_forecast_nightly", "stock_forecaster"
# The bad files of the real sample (see ../shared/data/PROVENANCE.md) or of the synthetic archive.
BAD_FILES = (
    {
        "Stocks/accp.us.txt": "empty (0 bytes",
        "Stocks/jmom.us.txt": "single-row",
        "ETFs/fieg.us.txt": "single-row",
        "Stocks/ben.us.txt": "High must be >= Low",
        "ETFs/cwi.us.txt": "Open must be a number > 0",
        "Stocks/hydb.us.txt": "Volume=0",
    }
    if HAS_SHARED_DATA
    else {
        "Stocks/empt.us.txt": "empty (0 bytes",
        "Stocks/solo.us.txt": "single-row",
        "Stocks/badp.us.txt": "High must be >= Low",
        "Stocks/illq.us.txt": "Volume=0",
        "ETFs/shrt.us.txt": "data row(s)",
    }
)


def latest_run(client, index: int = 0, architecture: str | None = "lstm"):
    """The newest night's LSTM candidate run (architecture None: the night's own run)."""
    return conftest.latest_run(client, MODEL, index, architecture)


def artifact_json(client, run_id, path):
    return json.loads(open(client.download_artifacts(run_id, path)).read())


@pytest.fixture(scope="module")
def strict_night(tmp_path_factory):
    """The sample's night under a gate no forecaster passes: everything up to the gate runs and is logged."""
    home = tmp_path_factory.mktemp("stock-e2e")
    done = run_dag(DAG_ID, pipeline_env(home, MLOPS_GATE_STOCK_FORECASTER="0.0001"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return home, done


@pytest.fixture(scope="module")
def home(strict_night):
    return strict_night[0]


def test_quarantine_report_names_every_bad_file_with_its_reason(home):
    client = mlflow_client(home)
    night = latest_run(client, architecture=None)
    quarantine = artifact_json(client, night.info.run_id, "reports/quarantine.json")
    assert set(quarantine) == set(BAD_FILES)
    for name, reason in BAD_FILES.items():
        assert any(reason in r for r in quarantine[name]), (name, quarantine[name])
    assert night.data.metrics["data_files_quarantined"] == len(BAD_FILES)
    assert night.data.metrics["data_files_passed"] >= 3 and night.data.tags["validation_status"] == "passed"
    run = latest_run(client)
    used = artifact_json(client, run.info.run_id, "reports/stock_tickers.json")["files"]
    assert used and not set(used) & set(BAD_FILES)


def test_mase_and_naive_metrics_are_logged(home):
    client = mlflow_client(home)
    run = latest_run(client)
    metrics = run.data.metrics
    for name in ("mae", "rmse", "mape"):
        assert metrics[f"test_{name}"] > 0 and metrics[f"naive_test_{name}"] > 0
    assert 0 <= metrics["test_directional_accuracy"] <= 1
    # MASE: each ticker's errors in units of its own naive MAE, pooled over every forecast of the test days.
    by_ticker = artifact_json(client, run.info.run_id, "reports/test_metrics_by_ticker.json")
    days = sum(t["test_days"] for t in by_ticker.values())
    pooled = sum(t["test_mase"] * t["test_days"] for t in by_ticker.values()) / days
    assert metrics["test_mase"] == pytest.approx(pooled, rel=1e-9) and days == metrics["test_windows"]
    assert 0 <= metrics["dm_pvalue_vs_naive"] <= 1 and metrics["val_mase"] > 0
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == list(range(1, len(history) + 1)) and history


def test_parity_benchmarks_and_fused_lstm_are_logged(home):
    client = mlflow_client(home)
    run = latest_run(client)
    metrics = run.data.metrics
    assert metrics["parity_fp32_max_abs_diff"] <= 1e-4 and metrics["parity_fp32_passed"] == 1.0
    for variant in ("int8_dynamic", "fp16"):
        assert f"parity_{variant}_quality_drop" in metrics, variant
    native = run.data.tags["bench_cpu_native_path"]  # the fastest of eager, tf.function and predict
    for batch in (1, 64):
        for variant in (native, "onnx_fp32"):
            assert metrics[f"bench_cpu_{variant}_b{batch}_p95_ms"] > 0, (variant, batch)
    natives = [k for k in metrics if k.startswith("bench_cpu_native_") and k.endswith("_b1_p50_ms")]
    assert natives == [f"bench_cpu_{native}_b1_p50_ms"]  # only the fastest native path is timed in full
    graph = artifact_json(client, run.info.run_id, "reports/onnx_graph.json")
    assert "LSTM" in graph["op_types"] and "Loop" not in graph["op_types"]
    assert run.data.params["recurrent_layer"] == "keras.layers.LSTM"
    paths = {a.path for folder in ("plots", "preprocessing") for a in client.list_artifacts(run.info.run_id, folder)}
    assert "preprocessing/stock_preprocessing.json" in paths
    assert any(p.startswith("plots/forecast_") and p.endswith(".png") for p in paths), paths


def predictable_archive(folder, tickers: int = 5, days: int = 700, phi: float = 0.9):
    """An archive in Kaggle's layout whose next-day log return is `phi` times today's plus noise: a model that
    learns any of that beats the naive forecast (MASE ≈ 1 + k² − 2kφ for a forecast k·r_t, below 1 for 0 < k < 2φ)."""
    from mlops_onnx.datasets import STOCKS
    from mlops_onnx.sources.synthetic_stocks import LAST_DATE, write_ticker

    rng = np.random.default_rng(7)
    for n in range(tickers):
        returns = np.zeros(days)
        for t in range(1, days):
            returns[t] = phi * returns[t - 1] + rng.normal(0, 0.004)
        close = 50 * np.exp(np.cumsum(returns))
        open_ = np.concatenate([[close[0]], close[:-1]])
        frame = pd.DataFrame(
            {
                "Date": pd.bdate_range(end=LAST_DATE, periods=days).strftime("%Y-%m-%d"),
                "Open": open_,
                "High": np.maximum(open_, close) * 1.002,
                "Low": np.minimum(open_, close) * 0.998,
                "Close": close,
                "Volume": rng.integers(100_000, 200_000, days),
            }
        )
        write_ticker(folder / STOCKS.folder / "Stocks" / f"ar{n}.us.txt", frame)
    return folder


def test_the_better_candidate_beats_naive_and_is_registered_as_the_first_champion(tmp_path):
    home = tmp_path / "predictable"
    data = predictable_archive(tmp_path / "data")
    env = pipeline_env(home, data, MLOPS_EPOCHS="15", MLOPS_CANDIDATES_STOCKS="lstm,transformer")
    done = run_dag(DAG_ID, env)
    assert done.returncode == 0, done.stdout[-3000:]
    client = mlflow_client(home)
    night = latest_run(client, architecture=None)
    runs = {a: latest_run(client, architecture=a) for a in ("lstm", "transformer")}
    for architecture, run in runs.items():  # both trained, side by side, on the same test days
        assert run.data.tags["architecture"] == architecture
        assert run.data.tags["mlflow.parentRunId"] == night.info.run_id
        assert run.data.metrics["test_windows"] == runs["lstm"].data.metrics["test_windows"]
        for baseline in ("naive", "drift", "ets"):
            assert run.data.metrics[f"baseline_{baseline}_test_mase"] > 0, (architecture, baseline)
        assert 0 <= run.data.metrics["dm_pvalue_vs_drift"] <= 1
        # the dashboard draws the night's candidates that were not registered from their own run's fp32 export
        assert "onnx/model_fp32.onnx" in {a.path for a in client.list_artifacts(run.info.run_id, "onnx")}
    # The night's candidate was chosen by the paired test on the validation days: the one with fewer
    # parameters unless the other beat it clearly; every pairwise p is on the night's run.
    best = night.data.tags["chosen_architecture"]
    run, other = runs[best], runs["transformer" if best == "lstm" else "lstm"]
    metrics, tags = run.data.metrics, run.data.tags
    assert metrics["test_mase"] < 0.9 and metrics["dm_pvalue_vs_naive"] < 0.05, metrics
    assert tags["gate_status"] == "registered", tags.get("gate_reason")
    assert tags["promotion_decision"] == "first_champion" and night.data.tags["promotion_decision"] == "first_champion"
    assert tags["choice_reason"].startswith("Chosen: ") and "choice_p_value" not in metrics
    # tried in the dashboard's own loader, in a fresh interpreter, before `champion` moved
    assert tags["server_trial_status"] == "passed", tags.get("server_trial")
    assert metrics["server_trial_rows"] > 0 and metrics["server_trial_max_abs_diff"] <= 1e-4
    assert other.data.tags["promotion_decision"] in ("not_chosen", "rejected")
    if other.data.tags["promotion_decision"] == "not_chosen":
        assert other.data.tags["promotion_reason"].startswith("Not chosen: ")
        assert other.data.tags["choice_test"] == "diebold_mariano_hln"
        pair = [k for k in night.data.metrics if k.startswith("choice_p_")]
        assert len(pair) == 1 and night.data.metrics[pair[0]] == pytest.approx(other.data.metrics["choice_p_value"])
        simpler = min(runs, key=lambda a: runs[a].data.metrics["onnx_parameters"])
        assert best == simpler or other.data.metrics["choice_p_value"] < 0.05
    else:
        assert other.data.tags["promotion_reason"].startswith("Rejected by the gate")
    dropped = night.data.tags["candidates_dropped"]  # the night lists the other, passed the gate or not
    assert dropped.startswith(tuple(f"{other.data.tags['architecture']}: {why}" for why in ("not chosen", "rejected")))
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert version.run_id == run.info.run_id and float(version.tags["test_mase"]) == pytest.approx(metrics["test_mase"])
    assert version.tags["architecture"] == best
    files = {a.path for a in client.list_artifacts(run.info.run_id, "model/preprocessing")}
    assert "model/preprocessing/stock_preprocessing.json" in files


def test_a_model_that_misses_the_mase_threshold_is_rejected_and_not_registered(strict_night):
    home, done = strict_night
    client = mlflow_client(home)
    run = latest_run(client)
    tags = run.data.tags
    assert tags["gate_status"] == "rejected"
    assert f"test_mase {run.data.metrics['test_mase']:.4f} > threshold 0.0001" in tags["gate_reason"]
    night = latest_run(client, architecture=None).data.tags
    assert night["gate_status"] == "rejected" and "no candidate passed" in night["promotion_reason"]
    assert client.search_registered_models() == []
    assert "GATE REJECTED" in done.stdout


BASELINE_OPS = {
    "naive": ["Concat", "ConstantOfShape", "Shape"],
    "drift": ["Add", "Gather", "Mul", "ReduceMean"],
    "ets": ["Add", "Gather", "MatMul"],
}


def test_a_night_with_the_baselines_compares_them_with_the_model_and_serves_the_choice(tmp_path):
    from mlops_onnx.serving import dashboard
    from mlops_onnx.serving.stock_views import Line, forecast_view
    from mlops_onnx.snapshots import SnapshotStore

    home = tmp_path / "baselines"
    done = run_dag(DAG_ID, pipeline_env(home, MLOPS_CANDIDATES_STOCKS="lstm,naive,drift,ets"))
    assert done.returncode == 0, done.stdout[-3000:]
    client = mlflow_client(home)
    night = latest_run(client, architecture=None)
    assert night.data.tags["candidates"] == "lstm,naive,drift,ets"
    runs = {a: latest_run(client, architecture=a) for a in ("lstm", *BASELINE_OPS)}
    lstm = runs["lstm"].data.metrics
    for architecture, ops in BASELINE_OPS.items():
        run = runs[architecture]
        metrics, tags = run.data.metrics, run.data.tags
        assert run.data.params["baseline"] == architecture and tags["mlflow.parentRunId"] == night.info.run_id
        for rows in ("val_windows", "test_windows", "tickers_used"):  # the LSTM's tickers and days
            assert metrics[rows] == lstm[rows], (architecture, rows)
        assert metrics["parity_fp32_passed"] == 1.0 and metrics["parity_fp32_max_abs_diff"] <= 1e-6
        assert not [k for k in metrics if k.startswith(("size_onnx_int8", "size_onnx_fp16", "parity_int8"))]
        assert metrics["bench_cpu_onnx_fp32_b1_p50_ms"] > 0 and tags["bench_cpu_native_path"] == "native_eager"
        assert artifact_json(client, run.info.run_id, "reports/onnx_graph.json")["op_types"] == ops
        assert tags["candidate_status"] in ("chosen", "not chosen", "rejected"), tags
    naive = runs["naive"].data
    assert naive.metrics["test_mase"] == 1.0 and naive.tags["gate_status"] != "rejected"  # never worse than itself

    # Every candidate that passed the gate was compared on the same validation rows, the simplest first.
    choice = artifact_json(client, night.info.run_id, "reports/candidate_choice.json")
    assert choice["rows"] == lstm["val_windows"] and "naive" in choice["parameters"]
    assert min(choice["parameters"], key=choice["parameters"].get) == "naive"
    chosen = night.data.tags["chosen_architecture"]
    assert choice["chosen"] == chosen and choice["reasons"][chosen].startswith("Chosen")
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert version.run_id == runs[chosen].info.run_id and version.tags["architecture"] == chosen
    assert runs[chosen].data.tags["server_trial_status"] == "passed"  # in the dashboard's loader, a fresh process

    # The dashboard serves the champion, whichever it is, through its one loader, with the scaler beside it.
    champion = dashboard.load_champion(client)
    assert champion.architecture == chosen and champion.model.window == int(runs["lstm"].data.params["window"])
    snapshot = SnapshotStore(settings_with(home).snapshots_dir).get("stocks", champion.data_hash)
    path = dashboard.ticker_files(snapshot.path, champion.passing_files)[champion.tickers_used[0]]
    view = forecast_view([Line(champion.label, "champion", champion.model)], path, days=60)
    assert len(view.chart) == 60 and np.isfinite(view.chart[champion.label]).all()

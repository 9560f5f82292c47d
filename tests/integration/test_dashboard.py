"""The stock dashboard rendered by Streamlit's AppTest against a temporary registry and snapshot."""

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from conftest import mlflow_client
from onnx import TensorProto, helper

from mlops_onnx.serving import dashboard
from mlops_onnx.serving.artifacts import attach_serving_files
from mlops_onnx.snapshots import SnapshotStore
from mlops_onnx.timeseries import FEATURES, FeatureScaler

pytestmark = pytest.mark.slow  # real servers, registries and trained models: make test, not make test-fast

WINDOW = 5
SCRIPT = "from mlops_onnx.serving.dashboard import main\nmain()\n"


def drift_model(daily_log_return: float) -> onnx.ModelProto:
    """A real ONNX forecaster with the stock model's interface: [batch, window, features] -> [batch, 1]."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["window"], ["mean"], axes=[1, 2], keepdims=0),
            helper.make_node("Mul", ["mean", "zero"], ["zeroed"]),
            helper.make_node("Add", ["zeroed", "drift"], ["flat"]),
            helper.make_node("Unsqueeze", ["flat", "axis"], ["log_return"]),
        ],
        "drift",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["batch", WINDOW, len(FEATURES)])],
        [helper.make_tensor_value_info("log_return", TensorProto.FLOAT, ["batch", 1])],
        [
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("drift", TensorProto.FLOAT, [], [daily_log_return]),
            helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


def ticker_file(path, rows: int = 300) -> None:
    rng = np.random.default_rng(0)
    close = 50 * np.exp(np.cumsum(rng.normal(0.0005, 0.01, rows)))
    dates = np.arange(np.datetime64("2017-01-02"), np.datetime64("2017-01-02") + rows)
    lines = ["Date,Open,High,Low,Close,Volume,OpenInt"] + [
        f"{d},{c:.4f},{c * 1.01:.4f},{c * 0.99:.4f},{c:.4f},{1000 + i},0" for i, (d, c) in enumerate(zip(dates, close))
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())


def closes(path) -> np.ndarray:
    return np.array([float(line.split(",")[4]) for line in path.read_text().splitlines()[1:]])


def drift_baseline(close: np.ndarray, days: int) -> float:
    """The drift baseline's log return for the last `days` days, by hand: the mean daily log return of the
    closes up to the first day a forecast is made on."""
    first_origin = len(close) - 1 - days
    return float(np.mean(np.diff(np.log(close[: first_origin + 1]))))


def scores_by_hand(close: np.ndarray, days: int, log_return: float) -> dict[str, float]:
    now, nxt = close[-days - 1 : -1], close[-days:]
    forecast = now * np.exp(log_return)
    moved = nxt != now
    return {
        "MAE": np.mean(np.abs(forecast - nxt)),
        "RMSE": np.sqrt(np.mean((forecast - nxt) ** 2)),
        "MAPE %": np.mean(np.abs(forecast - nxt) / nxt) * 100,
        "MASE": np.mean(np.abs(forecast - nxt)) / np.mean(np.abs(now - nxt)),
        "directional accuracy": np.mean(np.sign(forecast - now)[moved] == np.sign(nxt - now)[moved])
        if log_return
        else np.nan,  # a no-change forecast calls no direction
    }


@pytest.fixture
def registry(settings_env, tmp_path):
    """The settings, a snapshot of two tickers, and `register`, `night`, `candidate`, `log_candidate_model`:
    a champion registered from a candidate run of a night, as the pipeline leaves them."""
    import mlflow

    settings = settings_env()
    store = SnapshotStore(settings.snapshots_dir)
    with store.staging("stocks") as folder:
        ticker_file(folder / "Stocks" / "abc.us.txt")
        ticker_file(folder / "ETFs" / "xyz.us.txt", rows=90)
        snapshot = store.commit("stocks", folder, source="test")
    client = mlflow_client(settings.home)
    scaler = FeatureScaler(mean=np.zeros(len(FEATURES)), std=np.ones(len(FEATURES)), clip=8.0)
    scaler_path = scaler.to_json(tmp_path / "stock_preprocessing.json", window=WINDOW)
    experiment = client.create_experiment("stock_forecaster")

    def night() -> str:
        tags = {"run_kind": "night", "architecture": "night"}
        return client.create_run(experiment, tags=tags).info.run_id

    def candidate(night_id: str, architecture: str, **tags: str) -> str:
        tags |= {"run_kind": "candidate", "architecture": architecture, "mlflow.parentRunId": night_id}
        return client.create_run(experiment, tags=tags).info.run_id

    def log_candidate_model(run_id: str, drift: float, model: onnx.ModelProto | None = None) -> None:
        """What export and training leave in a candidate's run: its fp32 ONNX file (`model`, else a constant
        `drift`) and its scaler."""
        onnx_path = tmp_path / run_id / "model_fp32.onnx"
        onnx_path.parent.mkdir()
        onnx.save(model or drift_model(drift), str(onnx_path))
        client.log_artifact(run_id, str(onnx_path), "onnx")
        client.log_artifact(run_id, str(scaler_path), "preprocessing")

    def register(
        drift: float,
        val_mase: float,
        alias: str,
        run_id: str | None = None,
        model: onnx.ModelProto | None = None,
        **tags: str,
    ) -> None:
        model = model or drift_model(drift)
        with mlflow.start_run(run_id=run_id, experiment_id=experiment):
            mlflow.log_metrics({"val_mase": val_mase, "test_mase": val_mase, "bench_cpu_onnx_fp32_b1_p50_ms": 0.04})
            info = mlflow.onnx.log_model(
                model,
                name="model",
                save_as_external_data=False,
                onnx_execution_providers=["CPUExecutionProvider"],
            )
            onnx_path = tmp_path / "model_fp32.onnx"
            onnx.save(model, str(onnx_path))
            attach_serving_files(info.model_id, "fp32", onnx_path, [scaler_path], {"val_mase": val_mase})
        version = mlflow.register_model(
            info.model_uri,
            "stock_forecaster",
            tags={"serving_variant": "fp32", "data_hash": snapshot.content_hash, **tags},
        )
        client.set_registered_model_alias("stock_forecaster", alias, version.version)

    return SimpleNamespace(
        settings=settings,
        snapshot=snapshot,
        register=register,
        night=night,
        candidate=candidate,
        log_candidate_model=log_candidate_model,
    )


@pytest.fixture
def night_of_three(registry):
    """A night with three candidates: the lstm won and is champion (daily drift 0.001), the transformer was
    not chosen (its drift is the drift baseline's on abc's last 120 days), the ensemble failed in export."""
    night = registry.night()
    lstm = registry.candidate(night, "lstm", candidate_status="chosen")
    registry.log_candidate_model(lstm, drift=0.001)
    registry.register(drift=0.001, val_mase=0.97, alias="champion", run_id=lstm, architecture="lstm")
    transformer = registry.candidate(night, "transformer", candidate_status="not chosen")
    drift = drift_baseline(closes(registry.snapshot.path / "Stocks" / "abc.us.txt"), days=120)
    registry.log_candidate_model(transformer, drift=drift)
    registry.candidate(
        night,
        "ensemble",
        candidate_status="failed",
        failed_stage="export",
        failure_reason="tf2onnx could not convert the Mean of the members",
    )
    return registry


def run_app(timeout: int = 60):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    # The app caches a version by its number for the process: another test's version 1 is not this one's.
    st.cache_resource.clear()
    app = AppTest.from_string(SCRIPT, default_timeout=timeout)
    return app.run()


def test_without_a_champion_the_page_says_so(registry):
    app = run_app()
    assert not app.exception
    assert "No stock_forecaster@champion" in app.warning[0].value


def test_registered_versions_view_names_each_architecture(registry):
    registry.register(drift=0.0, val_mase=0.99, alias="challenger")  # registered before candidates: untagged
    registry.register(drift=0.001, val_mase=0.97, alias="champion", architecture="transformer")
    app = run_app()
    assert not app.exception, app.exception
    assert "@champion is transformer (v2)" in app.title[0].value
    assert app.selectbox[0].options == ["abc", "xyz"]
    assert "stock_forecaster v2" in app.caption[0].value and "not nested in a night" in app.caption[0].value
    versions = app.dataframe[-1].value
    assert list(versions["version"]) == [2, 1] and list(versions["val MASE"]) == [0.97, 0.99]
    assert list(versions["architecture"]) == ["transformer", "lstm"]
    forecast = app.dataframe[0].value
    assert list(forecast.index) == ["transformer v2 (champion)", "naive", "drift", "ets"]

    app.selectbox[0].select("xyz").run()
    assert not app.exception


def test_forecast_view_draws_every_candidate_of_the_night_and_every_baseline(night_of_three):
    app = run_app()
    assert not app.exception, app.exception
    assert "@champion is lstm (v1)" in app.title[0].value
    chart = app.get("vega_lite_chart")[0]  # the forecast tab's; the versions tab has a bar chart
    lines = ["lstm v1 (champion)", "transformer", "naive", "drift", "ets"]
    drawn = chart_columns(chart)
    assert set(lines) | {"actual close"} <= drawn
    table = app.dataframe[0].value
    assert list(table.index) == lines
    assert list(table["kind"]) == ["champion", "candidate: not chosen", "baseline", "baseline", "baseline"]
    metrics = table.drop(columns=["kind", "directional accuracy"]).to_numpy(dtype=float)
    assert np.isfinite(metrics).all()
    assert table["directional accuracy"].isna().tolist() == [False, False, True, False, False]  # naive: no direction
    assert table.loc["naive", "MASE"] == pytest.approx(1.0)
    # The transformer's constant log return is the drift baseline's: the same forecasts, the same scores.
    assert table.loc["transformer"].drop("kind").to_numpy(dtype=float) == pytest.approx(
        table.loc["drift"].drop("kind").to_numpy(dtype=float), rel=1e-5
    )
    not_drawn = app.dataframe[1].value
    assert list(not_drawn["not drawn"]) == ["ensemble"]
    assert not_drawn["why"][0] == "failed in export: tf2onnx could not convert the Mean of the members"
    assert "ensemble" not in drawn


def chart_columns(chart) -> set[str]:
    """The series a Streamlit line chart draws: its data set, melted, names them in a `color` column."""
    import pyarrow as pa

    (dataset,) = chart.proto.datasets
    frame = pa.ipc.open_stream(dataset.data.data).read_all().to_pandas()
    (names,) = [column for column in frame.columns if column.startswith("color")]
    return set(frame[names].astype(str))


def test_forecast_numbers_match_a_hand_computation(night_of_three):
    from mlops_onnx.serving.stock_views import Line, forecast_view

    client = mlflow_client(night_of_three.settings.home)
    champion = dashboard.load_champion(client)
    path = dashboard.ticker_files(night_of_three.snapshot.path)["abc"]
    view = forecast_view([Line(champion.label, "champion", champion.model)], path, days=120)
    assert len(view.chart) == 120 and view.not_drawn == {}
    close = closes(path)
    assert view.chart["actual close"].to_numpy() == pytest.approx(close[-120:])
    expected = {
        "lstm v1 (champion)": scores_by_hand(close, 120, np.float32(0.001)),
        "naive": scores_by_hand(close, 120, 0.0),
        "drift": scores_by_hand(close, 120, drift_baseline(close, 120)),
    }
    for line, scores in expected.items():
        assert view.table.loc[line].drop("kind").to_dict() == pytest.approx(scores, rel=1e-6, nan_ok=True), line
    assert np.isnan(view.table.loc["naive", "directional accuracy"])  # a no-change forecast calls no direction


def test_a_candidate_without_an_onnx_model_is_listed_with_its_reason(registry):
    from mlops_onnx.serving.stock_views import night_candidates

    night = registry.night()
    lstm = registry.candidate(night, "lstm", candidate_status="chosen")
    registry.register(drift=0.0, val_mase=1.0, alias="champion", run_id=lstm, architecture="lstm")
    registry.candidate(
        night,
        "transformer",
        candidate_status="rejected",
        promotion_reason="Rejected by the gate: test_mase 1.0200 > threshold 1.0000.",
    )
    (other,) = night_candidates(mlflow_client(registry.settings.home), lstm)
    assert other.architecture == "transformer" and other.status == "rejected"
    assert other.why_not_drawn == (
        "its run has no onnx/model_fp32.onnx and no preprocessing/stock_preprocessing.json "
        "(Rejected by the gate: test_mase 1.0200 > threshold 1.0000.)"
    )


def baseline_model(kind: str) -> onnx.ModelProto:
    """A stock baseline candidate's own ONNX graph (`stock_baselines`) for the window and the unit scaler here."""
    from mlops_onnx.models.stock_baselines import baseline_onnx, ses_weights

    weights = {"naive": np.zeros(WINDOW), "drift": np.full(WINDOW, 1 / WINDOW), "ets": ses_weights(0.5, WINDOW)}
    model = {"baseline": kind, "window": WINDOW, "ret_1_mean": 0.0, "ret_1_std": 1.0, "weights": list(weights[kind])}
    return baseline_onnx(model, "window")


def test_a_baseline_champion_is_served_and_drawn_beside_the_statistical_baselines(registry):
    """drift won the night and is champion, the naive candidate was not chosen: both are drawn from their ONNX
    models, and the statistical naive keeps its line under another name."""
    from mlops_onnx.serving.stock_views import Line, forecast_view

    night = registry.night()
    drift = registry.candidate(night, "drift", candidate_status="chosen")
    registry.log_candidate_model(drift, 0.0, model=baseline_model("drift"))
    registry.register(0.0, 0.99, "champion", run_id=drift, model=baseline_model("drift"), architecture="drift")
    naive = registry.candidate(night, "naive", candidate_status="not chosen")
    registry.log_candidate_model(naive, 0.0, model=baseline_model("naive"))

    app = run_app()
    assert not app.exception, app.exception
    assert "@champion is drift (v1)" in app.title[0].value
    table = app.dataframe[0].value
    assert list(table.index) == ["drift v1 (champion)", "naive", "naive (statistical)", "drift", "ets"]
    assert list(table["kind"]) == ["champion", "candidate: not chosen", "baseline", "baseline", "baseline"]
    assert table.loc["naive", "MASE"] == table.loc["naive (statistical)", "MASE"] == pytest.approx(1.0)

    client = mlflow_client(registry.settings.home)
    champion = dashboard.load_champion(client)
    assert (champion.architecture, champion.model.window, champion.variant) == ("drift", WINDOW, "fp32")
    path = dashboard.ticker_files(registry.snapshot.path)["abc"]
    view = forecast_view([Line(champion.label, "champion", champion.model)], path, days=120)
    close = closes(path)
    # the mean daily log return of the WINDOW days up to each day forecast, through the registered (unit) scaler
    origins = np.arange(len(close) - 121, len(close) - 1)
    by_hand = [close[t] * np.exp(np.mean(np.diff(np.log(close[t - WINDOW : t + 1])))) for t in origins]
    np.testing.assert_allclose(view.chart["drift v1 (champion)"].to_numpy(), by_hand, rtol=1e-6)

"""The stock dashboard rendered by Streamlit's AppTest against a temporary registry and snapshot."""

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


def ticker_file(path, rows: int = 120) -> None:
    rng = np.random.default_rng(0)
    close = 50 * np.exp(np.cumsum(rng.normal(0.0005, 0.01, rows)))
    dates = np.arange(np.datetime64("2017-01-02"), np.datetime64("2017-01-02") + rows)
    lines = ["Date,Open,High,Low,Close,Volume,OpenInt"] + [
        f"{d},{c:.4f},{c * 1.01:.4f},{c * 0.99:.4f},{c:.4f},{1000 + i},0" for i, (d, c) in enumerate(zip(dates, close))
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())


@pytest.fixture
def registry(settings_env, tmp_path):
    import mlflow

    settings = settings_env()
    store = SnapshotStore(settings.snapshots_dir)
    with store.staging("stocks") as folder:
        ticker_file(folder / "Stocks" / "abc.us.txt")
        ticker_file(folder / "ETFs" / "xyz.us.txt", rows=90)
        snapshot = store.commit("stocks", folder, source="test")
    client = mlflow_client(settings.home)
    scaler = FeatureScaler(mean=np.zeros(len(FEATURES)), std=np.ones(len(FEATURES)), clip=8.0)

    def register(drift: float, val_mase: float, alias: str) -> None:
        scaler_path = scaler.to_json(tmp_path / "stock_preprocessing.json", window=WINDOW)
        with mlflow.start_run():
            mlflow.log_metrics({"val_mase": val_mase, "test_mase": val_mase, "bench_cpu_onnx_fp32_b1_p50_ms": 0.04})
            info = mlflow.onnx.log_model(
                drift_model(drift),
                name="model",
                save_as_external_data=False,
                onnx_execution_providers=["CPUExecutionProvider"],
            )
            onnx_path = tmp_path / "model_fp32.onnx"
            onnx.save(drift_model(drift), str(onnx_path))
            attach_serving_files(info.model_id, "fp32", onnx_path, [scaler_path], {"val_mase": val_mase})
        version = mlflow.register_model(
            info.model_uri, "stock_forecaster", tags={"serving_variant": "fp32", "data_hash": snapshot.content_hash}
        )
        client.set_registered_model_alias("stock_forecaster", alias, version.version)

    return settings, register


def run_app(timeout: int = 60):
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_string(SCRIPT, default_timeout=timeout)
    return app.run()


def test_without_a_champion_the_page_says_so(registry):
    app = run_app()
    assert not app.exception
    assert "No stock_forecaster@champion" in app.warning[0].value


def test_forecast_view_and_versions_view(registry):
    _, register = registry
    register(drift=0.0, val_mase=0.99, alias="challenger")
    register(drift=0.001, val_mase=0.97, alias="champion")
    app = run_app()
    assert not app.exception, app.exception
    assert app.selectbox[0].options == ["abc", "xyz"]
    assert "stock_forecaster v2" in app.caption[0].value
    labels = [m.label for m in app.metric]
    assert "MASE (model MAE / naive MAE)" in labels
    versions = app.dataframe[1].value
    assert list(versions["version"]) == [2, 1] and list(versions["val MASE"]) == [0.97, 0.99]

    app.selectbox[0].select("xyz").run()
    assert not app.exception


def test_forecast_numbers(registry, tmp_path):
    settings, register = registry
    register(drift=0.0, val_mase=1.0, alias="champion")
    champion = dashboard.load_champion(mlflow_client(settings.home))
    snapshot = SnapshotStore(settings.snapshots_dir).get("stocks", champion.data_hash)
    chart, metrics = dashboard.forecast_ticker(champion, dashboard.ticker_files(snapshot.path)["abc"], days=30)
    assert len(chart) == 30
    # A zero forecast return is exactly the naive forecast: MASE 1.
    assert np.allclose(chart["model forecast"], chart["naive forecast"]) and metrics["view_mase"] == pytest.approx(1.0)

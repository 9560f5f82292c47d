"""Stock forecasts dashboard (Streamlit): `make dashboard`, on 127.0.0.1:8501.

View 1: pick a ticker; its actual close, the forecaster's `@champion` next-day forecast run through
ONNX Runtime (the gate's serving variant, with the scaler registered beside it) and the naive
forecast (tomorrow = today), with their error metrics.
View 2: the registered versions side by side (MASE, latency, size) from MLflow.
Against an MLflow server with authentication it logs in as the read-only `reader` account.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_onnx.catalog import PIPELINES, served_model

MODEL_NAME = served_model("dashboard")
DAG_ID = PIPELINES[MODEL_NAME].dag_id
VERSION_METRICS = {
    "val_mase": "val MASE",
    "test_mase": "test MASE",
    "test_mae": "test MAE",
    "naive_test_mae": "naive test MAE",
    "bench_cpu_onnx_fp32_b1_p50_ms": "ONNX fp32 p50 b=1 (ms)",
    "size_onnx_fp32_bytes": "ONNX fp32 size (bytes)",
}


@dataclass
class Champion:
    version: str
    variant: str
    session: object
    scaler: object
    window: int
    data_hash: str
    tickers_used: list[str]
    passing_files: set[str] | None  # files that passed validation in the champion's run (None: unknown)


def champion_version(client, name: str = MODEL_NAME) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, "champion").version)
    except MlflowException:
        return None


def load_champion(client, name: str = MODEL_NAME) -> Champion | None:
    """The champion's serving variant in an ONNX Runtime session, and its scaler; None without one."""
    version = champion_version(client, name)
    return load_version(client, name, version) if version else None


def load_version(client, name: str, version_number: str) -> Champion:
    """A registered version from its self-contained model directory (serving variant and scaler); which
    tickers it trained on and which files passed validation come from its run's reports."""
    from mlflow.exceptions import MlflowException

    from mlops_onnx.models.stocks import PREPROCESSING_FILE
    from mlops_onnx.runtime import make_session
    from mlops_onnx.serving.artifacts import download_version, run_file
    from mlops_onnx.timeseries import FeatureScaler

    version = client.get_model_version(name, version_number)
    with tempfile.TemporaryDirectory(prefix=f"{name}-v{version.version}-") as tmp:
        folder = Path(tmp)
        files = download_version(name, str(version.version), folder / "model")
        scaler_path = files.preprocessing / PREPROCESSING_FILE
        try:
            used = json.loads(run_file(version, "reports/stock_tickers.json", folder).read_text())
            tickers_used = [Path(f).name.split(".")[0] for f in used.get("files", [])]
        except (MlflowException, OSError):
            tickers_used = []
        try:
            report = json.loads(run_file(version, "reports/validation.json", folder).read_text())
            passing = set(report["passing_files"])
        except (MlflowException, OSError, KeyError):
            passing = None
        return Champion(
            version=str(version.version),
            variant=files.variant,
            session=make_session(files.onnx),
            scaler=FeatureScaler.from_json(scaler_path),
            window=int(json.loads(scaler_path.read_text())["window"]),
            data_hash=version.tags.get("data_hash", ""),
            tickers_used=tickers_used,
            passing_files=passing,
        )


def ticker_files(snapshot_path: Path, passing: set[str] | None = None) -> dict[str, Path]:
    """Ticker -> file in the snapshot; only files that passed validation when that is known."""
    return {
        p.name.split(".")[0]: p
        for p in sorted(snapshot_path.glob("*/*.us.txt"))
        if p.stat().st_size > 0 and (passing is None or p.relative_to(snapshot_path).as_posix() in passing)
    }


def forecast_ticker(champion: Champion, path: Path, days: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """Next-day close forecasts for the last `days` days of a ticker: model, naive and actual."""
    from mlops_onnx.runtime import run_batched
    from mlops_onnx.timeseries import WARMUP, forecast_metrics, make_features, read_ticker, windows

    frame = read_ticker(path)
    first_origin = WARMUP + champion.window - 1
    origins = np.arange(max(first_origin, len(frame) - 1 - days), len(frame) - 1)
    if len(origins) == 0:
        raise ValueError(f"{path.name}: {len(frame)} rows are too few for a {champion.window}-day window")
    features = champion.scaler.transform(make_features(frame).to_numpy(dtype=np.float32))
    predicted = run_batched(champion.session, windows(features, origins, champion.window)).reshape(-1)
    close = frame["Close"].to_numpy(dtype=np.float64)
    close_now, close_next = close[origins], close[origins + 1]
    chart = pd.DataFrame(
        {"actual close": close_next, "model forecast": close_now * np.exp(predicted), "naive forecast": close_now},
        index=pd.DatetimeIndex(frame["Date"].to_numpy()[origins + 1], name="date"),
    )
    return chart, forecast_metrics(close_now, close_next, predicted, "view")


def versions_table(client, name: str = MODEL_NAME) -> pd.DataFrame:
    """One row per registered version with the figures a reviewer compares."""
    rows = []
    for version in client.search_model_versions(f"name='{name}'"):
        metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
        row = {
            "version": int(version.version),
            "aliases": ", ".join(version.aliases),
            "serving variant": version.tags.get("serving_variant", ""),
        }
        row.update({label: metrics.get(key) for key, label in VERSION_METRICS.items()})
        # The nightly benchmark times only the fastest native path (tf.function, predict or eager).
        native = client.get_run(version.run_id).data.tags.get("bench_cpu_native_path") if version.run_id else None
        row["native path"] = native or ""
        row["native p50 b=1 (ms)"] = metrics.get(f"bench_cpu_{native}_b1_p50_ms") if native else None
        rows.append(row)
    return pd.DataFrame(rows).sort_values("version", ascending=False) if rows else pd.DataFrame()


def main() -> None:
    import streamlit as st
    from mlflow import MlflowClient

    from mlops_onnx import mlflow_auth, tracking
    from mlops_onnx.settings import get_settings
    from mlops_onnx.snapshots import SnapshotError, SnapshotStore

    settings = get_settings()
    tracking.configure(settings, account=mlflow_auth.READER)
    client = MlflowClient()
    st.set_page_config(page_title="Stock forecasts", layout="wide")
    st.title(f"Stock forecasts: {MODEL_NAME}@champion vs the naive forecast")
    forecast_tab, versions_tab = st.tabs(["Forecast", "Registered versions"])

    @st.cache_resource(show_spinner="Loading the champion from MLflow")
    def cached_version(version: str) -> Champion:  # one download and session per version, not per rerun
        return load_version(client, MODEL_NAME, version)

    with forecast_tab:
        version = champion_version(client)
        champion = cached_version(version) if version else None
        if champion is None:
            st.warning(f"No {MODEL_NAME}@champion in the registry yet: run the {DAG_ID} DAG.")
        else:
            try:
                snapshot = SnapshotStore(settings.snapshots_dir).get("stocks", champion.data_hash)
            except SnapshotError:
                snapshot = None
                st.error(
                    f"The champion's data snapshot {champion.data_hash[:12]} is not under {settings.snapshots_dir}."
                )
            if snapshot is not None:
                files = ticker_files(snapshot.path, champion.passing_files)
                names = sorted(files, key=lambda t: (t not in champion.tickers_used, t))
                ticker = st.selectbox("Ticker", names, help="Tickers the model trained on come first.")
                days = st.slider("Days", min_value=20, max_value=500, value=120, step=10)
                st.caption(
                    f"{MODEL_NAME} v{champion.version} · serving variant {champion.variant} · "
                    f"data {champion.data_hash[:12]}"
                )
                try:
                    chart, metrics = forecast_ticker(champion, files[ticker], days)
                except ValueError as exc:
                    st.error(str(exc))
                else:
                    st.line_chart(chart)
                    st.dataframe(
                        pd.DataFrame(
                            {
                                "model": [metrics["view_mae"], metrics["view_rmse"], metrics["view_mape"]],
                                "naive": [
                                    metrics["naive_view_mae"],
                                    metrics["naive_view_rmse"],
                                    metrics["naive_view_mape"],
                                ],
                            },
                            index=["MAE", "RMSE", "MAPE %"],
                        )
                    )
                    st.metric("MASE (model MAE / naive MAE)", f"{metrics['view_mase']:.4f}")
                    st.metric("Directional accuracy", f"{metrics['view_directional_accuracy']:.1%}")

    with versions_tab:
        table = versions_table(client)
        if table.empty:
            st.info(f"No registered versions of {MODEL_NAME} yet.")
        else:
            st.dataframe(table, hide_index=True)
            st.bar_chart(table.set_index("version")[["val MASE", "test MASE"]])


if __name__ == "__main__":
    main()

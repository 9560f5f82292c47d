"""Stock forecasts dashboard (Streamlit): `make dashboard`, on 127.0.0.1:8501.

View 1: pick a ticker; its actual close, the forecaster's `@champion` next-day forecast run through
ONNX Runtime (the gate's serving variant, with the scaler registered beside it), every other candidate
of the champion's night that has an fp32 ONNX model (from its own MLflow run, with its own scaler) and
the statistical baselines naive, drift and ETS, with each line's error metrics on the same days
(`stock_views`); a candidate that failed or has no ONNX model is listed with the reason its run gives.
View 2: the registered versions side by side (architecture, MASE, latency, size) from MLflow.
Against an MLflow server with authentication it logs in as the read-only `reader` account.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlops_onnx.catalog import PIPELINES
from mlops_onnx.serving.stock_views import (
    MODEL_NAME,
    CandidateRun,
    Line,
    OnnxForecaster,
    forecast_view,
    load_candidate,
    night_candidates,
    read_scaler,
)

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
    architecture: str
    run_id: str
    variant: str
    model: OnnxForecaster
    data_hash: str
    tickers_used: list[str]
    passing_files: set[str] | None  # files that passed validation in the champion's run (None: unknown)

    @property
    def label(self) -> str:
        return f"{self.architecture} v{self.version} (champion)"


def champion_version(client, name: str = MODEL_NAME) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, "champion").version)
    except MlflowException:
        return None


def version_architecture(version) -> str:
    """The version's `architecture` tag; a version registered before candidates is the task's first one."""
    return version.tags.get("architecture") or PIPELINES[MODEL_NAME].candidate().architecture


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

    version = client.get_model_version(name, version_number)
    with tempfile.TemporaryDirectory(prefix=f"{name}-v{version.version}-") as tmp:
        folder = Path(tmp)
        files = download_version(name, str(version.version), folder / "model")
        scaler, window = read_scaler(files.preprocessing / PREPROCESSING_FILE)
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
            architecture=version_architecture(version),
            run_id=version.run_id,
            variant=files.variant,
            model=OnnxForecaster(make_session(files.onnx), scaler, window),
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


def versions_table(client, name: str = MODEL_NAME) -> pd.DataFrame:
    """One row per registered version with the figures a reviewer compares."""
    rows = []
    for version in client.search_model_versions(f"name='{name}'"):
        metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
        row = {
            "version": int(version.version),
            "architecture": version_architecture(version),
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


def forecast_lines(champion: Champion, others: list[CandidateRun], load) -> tuple[list[Line], dict[str, str]]:
    """The champion's line and one per other candidate that has a model (`load`: run id -> OnnxForecaster),
    and why each of the rest is not drawn."""
    from mlflow.exceptions import MlflowException

    lines, not_drawn = [Line(champion.label, "champion", champion.model)], {}
    for candidate in others:
        if candidate.why_not_drawn:
            not_drawn[candidate.architecture] = candidate.why_not_drawn
            continue
        try:
            model = load(candidate.run_id)
        except (MlflowException, OSError, ValueError, RuntimeError) as exc:  # onnxruntime's errors are RuntimeErrors
            not_drawn[candidate.architecture] = f"its model could not be loaded from run {candidate.run_id}: {exc}"
        else:
            lines.append(Line(candidate.architecture, f"candidate: {candidate.status or 'no status'}", model))
    return lines, not_drawn


def show_forecast(st, client, settings, champion: Champion, load) -> None:
    """The forecast tab: ticker and days, the chart of every line, their scores and what is not drawn
    (`load`: run id -> OnnxForecaster, cached)."""
    from mlops_onnx.snapshots import SnapshotError, SnapshotStore

    try:
        snapshot = SnapshotStore(settings.snapshots_dir).get("stocks", champion.data_hash)
    except SnapshotError:
        st.error(f"The champion's data snapshot {champion.data_hash[:12]} is not under {settings.snapshots_dir}.")
        return
    files = ticker_files(snapshot.path, champion.passing_files)
    names = sorted(files, key=lambda t: (t not in champion.tickers_used, t))
    ticker = st.selectbox("Ticker", names, help="Tickers the model trained on come first.")
    days = st.slider("Days", min_value=20, max_value=500, value=120, step=10)
    others = night_candidates(client, champion.run_id)
    st.caption(
        f"Champion: {champion.architecture} · {MODEL_NAME} v{champion.version} · serving variant "
        f"{champion.variant} · data {champion.data_hash[:12]}. "
        + (
            "The other candidates of its night in fp32 (each with its own scaler); "
            if others
            else "Its run is not nested in a night's run: no other candidates to draw. "
        )
        + "the baselines naive, drift and ETS (drift and ETS fitted on the closes before the first day forecast)."
    )
    lines, not_drawn = forecast_lines(champion, others, load)
    try:
        view = forecast_view(lines, files[ticker], days)
    except ValueError as exc:
        st.error(str(exc))
        return
    st.line_chart(view.chart)
    st.dataframe(view.table)
    not_drawn |= view.not_drawn
    if not_drawn:
        st.dataframe(pd.DataFrame({"not drawn": list(not_drawn), "why": list(not_drawn.values())}), hide_index=True)


def main() -> None:
    import streamlit as st
    from mlflow import MlflowClient

    from mlops_onnx import mlflow_auth, tracking
    from mlops_onnx.settings import get_settings

    settings = get_settings()
    tracking.configure(settings, account=mlflow_auth.READER)
    client = MlflowClient()
    st.set_page_config(page_title="Stock forecasts", layout="wide")

    @st.cache_resource(show_spinner="Loading the champion from MLflow")
    def cached_version(version: str) -> Champion:  # one download and session per version, not per rerun
        return load_version(client, MODEL_NAME, version)

    @st.cache_resource(show_spinner="Loading a candidate from MLflow")
    def cached_candidate(run_id: str) -> OnnxForecaster:  # one download and session per candidate run
        return load_candidate(run_id)

    version = champion_version(client)
    champion = cached_version(version) if version else None
    if champion is None:
        st.title(f"Stock forecasts: no {MODEL_NAME}@champion yet")
    else:
        st.title(f"Stock forecasts: {MODEL_NAME}@champion is {champion.architecture} (v{champion.version})")
    forecast_tab, versions_tab = st.tabs(["Forecast", "Registered versions"])
    with forecast_tab:
        if champion is None:
            st.warning(f"No {MODEL_NAME}@champion in the registry yet: run the {DAG_ID} DAG.")
        else:
            show_forecast(st, client, settings, champion, cached_candidate)

    with versions_tab:
        table = versions_table(client)
        if table.empty:
            st.info(f"No registered versions of {MODEL_NAME} yet.")
        else:
            st.dataframe(table, hide_index=True)
            st.bar_chart(table.set_index("version")[["val MASE", "test MASE"]])


if __name__ == "__main__":
    main()

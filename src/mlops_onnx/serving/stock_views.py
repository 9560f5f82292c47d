"""The stock dashboard's forecast view: the champion, every other candidate of its night and the statistical
baselines on one ticker's last days, all scored on the same days.

A candidate of the champion's night is drawn from its own MLflow run: the fp32 ONNX file the export stage
logged there (`artifacts.RUN_FP32_ONNX`) and the scaler its training logged (`preprocessing/`). One that
failed a stage, or whose run holds no such files, is listed with the reason its run's tags give instead.
The baselines are `baselines.FORECASTERS` on the ticker's closes, drift and ETS fitted on the closes before
the first day forecast (so neither has seen a day it forecasts; the models' own training days are their
runs' business: a long enough view shows days a model trained on). The night's baseline candidates (naive,
drift and ETS over the model's window, `models.stock_baselines`) are candidates like the others, drawn from
their ONNX models; where one shares a statistical baseline's name, the statistical one is
"<name> (statistical)".
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
SCORES = {
    "mae": "MAE",
    "rmse": "RMSE",
    "mape": "MAPE %",
    "mase": "MASE",
    "directional_accuracy": "directional accuracy",
}


@dataclass(frozen=True)
class OnnxForecaster:
    """An ONNX model of the forecaster's interface (scaled windows -> next-day log return) with its scaler."""

    session: object
    scaler: object  # timeseries.FeatureScaler
    window: int


@dataclass(frozen=True)
class Line:
    """One model drawn on the chart: its label, what it is (the champion, a candidate's status) and the model."""

    label: str
    kind: str
    model: OnnxForecaster


@dataclass(frozen=True)
class CandidateRun:
    """Another candidate of the champion's night, and why it is not drawn (empty when it is)."""

    architecture: str
    run_id: str
    status: str
    why_not_drawn: str


@dataclass
class ForecastView:
    chart: pd.DataFrame  # actual close and every line's forecast close, one row per day forecast
    table: pd.DataFrame  # one row per line: kind and SCORES on the same days
    not_drawn: dict[str, str]  # a baseline that could not be fitted on this ticker -> why


def scaler_file() -> str:
    from mlops_onnx.models.stocks import PREPROCESSING_FILE

    return f"preprocessing/{PREPROCESSING_FILE}"


def read_scaler(path: Path):
    """The scaler of a `stock_preprocessing.json` and the window length written beside it."""
    from mlops_onnx.timeseries import FeatureScaler

    return FeatureScaler.from_json(path), int(json.loads(path.read_text())["window"])


def night_candidates(client, champion_run_id: str) -> list[CandidateRun]:
    """The other candidate runs of the night the champion's run is nested in, in the catalog's order; none
    when the champion's run is not nested in a night's run (registered before candidates)."""
    from mlops_onnx.serving.artifacts import RUN_FP32_ONNX
    from mlops_onnx.tracking import CANDIDATE

    champion = client.get_run(champion_run_id)
    night = champion.data.tags.get("mlflow.parentRunId")
    if not night:
        return []
    runs = client.search_runs(
        [champion.info.experiment_id],
        f"tags.run_kind = '{CANDIDATE}' and tags.`mlflow.parentRunId` = '{night}'",
    )
    order = [c.architecture for c in PIPELINES[MODEL_NAME].candidates]
    found = []
    for run in runs:
        if run.info.run_id == champion_run_id:
            continue
        tags = run.data.tags
        logged = {
            a.path
            for folder in (Path(RUN_FP32_ONNX).parent.as_posix(), "preprocessing")
            for a in client.list_artifacts(run.info.run_id, folder)
        }
        architecture = tags.get("architecture", "?")
        found.append(
            CandidateRun(architecture, run.info.run_id, tags.get("candidate_status", ""), why_not_drawn(tags, logged))
        )
    return sorted(
        found, key=lambda c: (order.index(c.architecture) if c.architecture in order else len(order), c.architecture)
    )


def why_not_drawn(tags: dict[str, str], logged: set[str]) -> str:
    """Why a candidate run cannot be drawn, from its tags and the artifact paths it logged; empty if it can."""
    from mlops_onnx.serving.artifacts import RUN_FP32_ONNX

    if tags.get("candidate_status") == "failed":
        return f"failed in {tags.get('failed_stage', '?')}: {tags.get('failure_reason', 'no reason logged')}"
    missing = [path for path in (RUN_FP32_ONNX, scaler_file()) if path not in logged]
    if not missing:
        return ""
    said = (
        tags.get("promotion_reason") or tags.get("gate_reason") or f"status {tags.get('candidate_status') or 'unknown'}"
    )
    return f"its run has no {' and no '.join(missing)} ({said})"


def load_candidate(run_id: str) -> OnnxForecaster:
    """A candidate's fp32 ONNX model in an ONNX Runtime session, with the scaler its run logged."""
    from mlops_onnx.runtime import make_session
    from mlops_onnx.serving.artifacts import RUN_FP32_ONNX, run_file

    with tempfile.TemporaryDirectory(prefix=f"candidate-{run_id[:12]}-") as tmp:
        scaler, window = read_scaler(run_file(run_id, scaler_file(), Path(tmp)))
        return OnnxForecaster(make_session(run_file(run_id, RUN_FP32_ONNX, Path(tmp))), scaler, window)


def scores(close_now: np.ndarray, close_next: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """SCORES of a log-return forecast on these days (MASE: against the naive forecast on the same days)."""
    from mlops_onnx.timeseries import forecast_metrics

    metrics = forecast_metrics(close_now, close_next, predicted, "view")
    scored = {label: metrics[f"view_{key}"] for key, label in SCORES.items()}
    if not np.any(predicted):  # a forecast that never moves (naive) calls no direction: not scored, not 0 %
        scored[SCORES["directional_accuracy"]] = float("nan")
    return scored


def view_days(path: Path, window: int, days: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A ticker's rows, its features and the view's forecast origins: its last `days` days that have a full
    `window` of features before them."""
    from mlops_onnx.timeseries import WARMUP, make_features, read_ticker

    frame = read_ticker(path)
    origins = np.arange(max(WARMUP + window - 1, len(frame) - 1 - days), len(frame) - 1)
    if len(origins) == 0:
        raise ValueError(f"{path.name}: {len(frame)} rows are too few for a {window}-day window")
    return frame, make_features(frame).to_numpy(dtype=np.float32), origins


def line_forecast(model: OnnxForecaster, features: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """One model's next-day log-return forecast at each origin, through ONNX Runtime."""
    from mlops_onnx.runtime import run_batched
    from mlops_onnx.timeseries import windows

    return run_batched(model.session, windows(model.scaler.transform(features), origins, model.window)).reshape(-1)


def forecast_view(lines: list[Line], path: Path, days: int) -> ForecastView:
    """Every line's and every baseline's next-day close forecasts for the last `days` days of a ticker,
    on the days every line has a full window for, with their SCORES."""
    from mlops_onnx.baselines import FORECASTERS
    from mlops_onnx.timeseries import TickerSeries

    frame, features, origins = view_days(path, max(line.model.window for line in lines), days)
    close = frame["Close"].to_numpy(dtype=np.float64)
    kinds, predicted, not_drawn = {}, {}, {}
    for line in lines:
        kinds[line.label], predicted[line.label] = line.kind, line_forecast(line.model, features, origins)
    # The baselines' "training part" (`training_log_close`): the closes up to the first origin, the day before
    # the first day forecast.
    series = TickerSeries(
        path.name.split(".")[0], frame["Date"].to_numpy(), close, features, {"train": np.arange(origins[0])}
    )
    for name, forecast in FORECASTERS.items():
        label = f"{name} (statistical)" if name in predicted else name  # a baseline candidate has the name
        try:
            predicted[label] = forecast(series, origins)
        except (ValueError, np.linalg.LinAlgError) as exc:
            not_drawn[label] = (
                f"could not be fitted on {series.ticker}'s {origins[0] + 1} closes before the first day forecast: {exc}"
            )
            continue
        kinds[label] = "baseline"
    close_now, close_next = close[origins], close[origins + 1]
    chart = pd.DataFrame(
        {"actual close": close_next} | {label: close_now * np.exp(r) for label, r in predicted.items()},
        index=pd.DatetimeIndex(frame["Date"].to_numpy()[origins + 1], name="date"),
    )
    table = pd.DataFrame(
        [{"line": label, "kind": kinds[label], **scores(close_now, close_next, r)} for label, r in predicted.items()]
    ).set_index("line")
    return ForecastView(chart, table, not_drawn)

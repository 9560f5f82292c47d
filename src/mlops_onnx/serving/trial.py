"""Try a version in the real server before `champion` moves to it (what TFX's InfraValidator does).

The API's model (fake news): the gate starts the serving app (`uvicorn mlops_onnx.serving.app:app`, one
worker, loopback) in a subprocess pinned to the new version alone (`MLOPS_SERVE_VERSION`), sends tonight's
first test articles (`MLOPS_TRIAL_ROWS`) one request each, and requires: `/health` ok within
`MLOPS_TRIAL_START_SECONDS`, every answer a 200 from that version, every probability within the fp32 parity
tolerance of the same registered files run offline in the gate's own process, and a p99 latency within
`MLOPS_TRIAL_MAX_P99_MS`.

The dashboard's model (stocks): a fresh interpreter loads the version with the dashboard's own loader
(`dashboard.load_version`: its model directory from MLflow, serving variant and scaler) and draws what the
forecast view draws for it (`stock_views.view_days` and `line_forecast`) on the last `DASHBOARD_DAYS` days of
the first tickers the view lists (`MLOPS_TRIAL_ROWS` forecasts in all), each ticker timed as one request; the
same rules hold against the same functions run in the gate's process.

Anything else rejects the version (`rejected_in_server`) and `champion` stays where it is.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from mlops_onnx.settings import Settings

DASHBOARD_DAYS = 20  # days forecast per ticker in the dashboard's trial


@dataclass(frozen=True)
class Trial:
    passed: bool
    reason: str
    rows: int = 0
    max_abs_diff: float | None = None
    p99_ms: float | None = None
    seconds: float = 0.0

    def metrics(self) -> dict[str, float]:
        values = {"rows": self.rows, "max_abs_diff": self.max_abs_diff, "p99_ms": self.p99_ms}
        return {f"server_trial_{k}": float(v) for k, v in values.items() if v is not None} | {
            "server_trial_seconds": self.seconds
        }


def server_trial(spec, version: str, state: dict, settings: Settings) -> Trial | None:
    """A would-be champion of the model the API serves answers tonight's first test rows in a fresh server
    (`serving.trial`); None for a model no API serves, or with MLOPS_TRIAL_ROWS=0."""
    import mlflow

    from mlops_onnx.catalog import PIPELINES
    from mlops_onnx.snapshots import SnapshotStore

    app = PIPELINES[spec.name].served_by
    if app is None or settings.trial_rows == 0:
        return None
    snapshot = SnapshotStore(settings.snapshots_dir).get(spec.dataset.name, state["snapshot"])
    atol = spec.parity_rules.fp32_max_abs_diff
    if app == "api":
        articles = spec.trial_articles(snapshot, settings, settings.trial_rows, settings.serve_max_text_chars)
        trial = try_in_server(spec.name, version, articles, settings, atol)
    else:
        trial = try_in_dashboard(spec.name, version, snapshot.path, settings, atol)
    with mlflow.start_run(run_id=state["mlflow_run_id"]):
        mlflow.log_metrics(trial.metrics())
        mlflow.set_tags({"server_trial_status": "passed" if trial.passed else "failed", "server_trial": trial.reason})
    print(f"[{spec.name}] server trial of v{version}: {'passed' if trial.passed else 'FAILED'}: {trial.reason}")
    return trial


def _trial_env(name: str, version: str, settings: Settings) -> dict[str, str]:
    """The serving process's environment: pinned to `version`, without the operator token."""
    return {k: v for k, v in os.environ.items() if k != "MLOPS_SERVE_RELOAD_TOKEN"} | {
        "MLOPS_SERVE_MODEL": name,
        "MLOPS_SERVE_VERSION": version,
        "MLOPS_SERVE_POLL_SECONDS": "0",
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "MLOPS_HOME": str(settings.home),
    }


def try_in_server(name: str, version: str, articles: list[dict], settings: Settings, atol: float) -> Trial:
    """Version `version` of `name` in a fresh API process, on `articles` ({"title", "text"} each)."""
    from mlflow import MlflowClient

    from mlops_onnx.serving.holder import load_version
    from mlops_onnx.serving.loadtest import free_port, start_server, wait_ready

    if not articles:
        return Trial(False, "no test article the API accepts to try it on")
    started = time.perf_counter()
    port = free_port()
    server = start_server(port, _trial_env(name, version, settings))
    try:
        try:
            served = wait_ready(f"http://127.0.0.1:{port}", server, timeout=settings.trial_start_seconds)
        except RuntimeError as exc:
            return Trial(
                False, f"v{version} did not come up in the server: {exc}", seconds=time.perf_counter() - started
            )
        if served.get("version") != version:
            return Trial(False, f"the server loaded v{served.get('version')}, not v{version}")
        offline = load_version(name, MlflowClient().get_model_version(name, version), "trial").predict(
            [SimpleNamespace(title=a.get("title", ""), text=a["text"]) for a in articles]
        )
        return _exchange(f"http://127.0.0.1:{port}", version, articles, offline, settings, atol, started)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except Exception:
            server.kill()


def _exchange(base_url: str, version: str, articles, offline, settings: Settings, atol: float, started) -> Trial:
    """Each article in its own request; the answers against `offline`, the latencies against the limit."""
    import httpx

    def failed(reason: str, **measured) -> Trial:
        return Trial(False, reason, seconds=time.perf_counter() - started, **measured)

    latencies, answers = [], []
    with httpx.Client(base_url=base_url, timeout=settings.trial_start_seconds) as http:
        for row, article in enumerate(articles):
            began = time.perf_counter()
            try:
                response = http.post("/predict", json=article)
            except httpx.HTTPError as exc:
                return failed(f"test row {row}: {type(exc).__name__} from the server")
            latencies.append((time.perf_counter() - began) * 1000)
            if response.status_code != 200:
                return failed(f"test row {row}: HTTP {response.status_code} {response.text[:200]}")
            answer = response.json()["predictions"][0]
            if answer["version"] != version:
                return failed(f"test row {row} was answered by v{answer['version']}, not v{version}")
            answers.append(answer["probability_fake"])
    diff = float(np.max(np.abs(np.asarray(answers) - offline))) if answers else 0.0
    p99 = float(np.percentile(latencies, 99)) if latencies else 0.0
    measured = {"rows": len(answers), "max_abs_diff": diff, "p99_ms": p99}
    tolerance = atol + 1e-6  # the API rounds probabilities to 6 decimals
    if diff > tolerance:
        return failed(f"its answers differ from the offline ONNX outputs by up to {diff:.3g} (> {atol:g})", **measured)
    if p99 > settings.trial_max_p99_ms:
        return failed(f"p99 latency {p99:.1f} ms > {settings.trial_max_p99_ms:g} ms", **measured)
    summary = f"{len(answers)} test rows over HTTP, max |diff| {diff:.2g}, p99 {p99:.1f} ms"
    return Trial(True, summary, seconds=time.perf_counter() - started, **measured)


def try_in_dashboard(name: str, version: str, snapshot_path, settings: Settings, atol: float) -> Trial:
    """Version `version` of `name` loaded and drawn by the dashboard's code in a fresh interpreter."""
    started = time.perf_counter()
    tickers = max(1, math.ceil(settings.trial_rows / DASHBOARD_DAYS))
    command = [sys.executable, "-m", "mlops_onnx.serving.trial", name, version, str(snapshot_path), str(tickers)]
    limit = settings.trial_start_seconds + tickers * settings.trial_max_p99_ms / 1000

    def failed(reason: str, **measured) -> Trial:
        return Trial(False, reason, seconds=time.perf_counter() - started, **measured)

    try:
        done = subprocess.run(
            command, env=_trial_env(name, version, settings), capture_output=True, text=True, timeout=limit
        )
    except subprocess.TimeoutExpired:
        return failed(f"v{version} did not load and draw in the dashboard's code within {limit:.0f} s")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return failed(f"v{version} did not load in the dashboard's code: {last[:300]}")
    served = json.loads(done.stdout.strip().splitlines()[-1])
    if served["version"] != version:
        return failed(f"the dashboard's loader loaded v{served['version']}, not v{version}")
    if not served["forecasts"]:
        return failed(f"no ticker of the snapshot had enough days to draw v{version} on")
    offline = dashboard_forecasts(name, version, snapshot_path, served["tickers"])["forecasts"]
    ticker = list(served["forecasts"])
    diff = max(float(np.max(np.abs(np.subtract(served["forecasts"][t], offline[t])))) for t in ticker)
    p99 = float(np.percentile(served["latencies_ms"], 99))
    rows = sum(len(f) for f in served["forecasts"].values())
    measured = {"rows": rows, "max_abs_diff": diff, "p99_ms": p99}
    if diff > atol:
        return failed(
            f"its forecasts differ from the offline ONNX outputs by up to {diff:.3g} (> {atol:g})", **measured
        )
    if p99 > settings.trial_max_p99_ms:
        return failed(f"p99 latency of a ticker's view {p99:.1f} ms > {settings.trial_max_p99_ms:g} ms", **measured)
    summary = (
        f"{rows} forecasts of {len(ticker)} tickers in the dashboard's code, max |diff| {diff:.2g}, p99 {p99:.1f} ms"
    )
    return Trial(True, summary, seconds=time.perf_counter() - started, **measured)


def dashboard_forecasts(name: str, version: str, snapshot_path, tickers: int | list[str]) -> dict:
    """What the dashboard's forecast view draws for `name` v`version` (loaded by its loader) on the last
    DASHBOARD_DAYS days of `tickers` (a count: the first the view lists, tickers it trained on first; a ticker
    too short for its window is left out), each ticker timed."""
    from pathlib import Path

    from mlflow import MlflowClient

    from mlops_onnx.serving.dashboard import load_version, ticker_files
    from mlops_onnx.serving.stock_views import line_forecast, view_days

    loaded = load_version(MlflowClient(), name, version)
    files = ticker_files(Path(snapshot_path), loaded.passing_files)
    if isinstance(tickers, int):
        tickers = sorted(files, key=lambda t: (t not in loaded.tickers_used, t))[:tickers]
    forecasts, latencies = {}, []
    for ticker in tickers:
        began = time.perf_counter()
        try:
            _, features, origins = view_days(files[ticker], loaded.model.window, DASHBOARD_DAYS)
        except ValueError:
            continue
        forecasts[ticker] = line_forecast(loaded.model, features, origins).tolist()
        latencies.append((time.perf_counter() - began) * 1000)
    return {"version": loaded.version, "tickers": list(forecasts), "forecasts": forecasts, "latencies_ms": latencies}


if __name__ == "__main__":  # the dashboard trial's fresh interpreter: name, version, snapshot folder, tickers
    print(json.dumps(dashboard_forecasts(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))))

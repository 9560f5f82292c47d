"""Stock prices: a Keras LSTM forecasting tomorrow's close from the last `window` trading days.

The model predicts the next day's log return r = log(C[t+1] / C[t]); the close forecast is
C[t]·exp(r). Returns rather than price levels: they are comparable across tickers and decades
(AAPL at $0.42 in 1984 and $175 in 2017), and a prediction of 0 *is* the naive forecast
"tomorrow = today", so the model has to earn every bit of MASE below 1. Inputs are ten features per
day (see `mlops_onnx.timeseries`), standardised by a scaler fitted on training rows only and saved
as `stock_preprocessing.json` beside the model; the ONNX model takes the scaled window
`[batch, window, 10]` and returns the log return `[batch, 1]` (a final Rescaling layer undoes the
target scaling inside the graph).

Tickers are the files that passed validation (∩ MLOPS_STOCK_TICKERS when set), longest histories
first, at most `max_tickers` (a ticker without enough training windows before `val_start`, or
without validation and test days, is left out and listed); each is read on its own and trimmed to
the rows its splits need, so memory grows with `max_tickers × (max_train_windows + validation and
test days)` rows, never with the archive. Training batches are gathered from those rows on the fly.
Splits are by date with fixed boundaries (see `mlops_onnx.timeseries`). The gate metric is the
*test* MASE (per-ticker scaled, see `timeseries.scaled_errors`): the model registers only if it is not
worse than naive on the test days; validation picked the weights and is never the gate. Beside it,
`train` logs the statistical baselines (naive, random walk with drift, ETS; `mlops_onnx.baselines`) on the
same test rows, the per-ticker mean MASE of each, and one-sided Diebold–Mariano p-values of the model
against naive and drift, and hands back its forecasts on the validation rows (`TrainResult.validation`), on
which the night's candidates are compared. Other architectures subclass `StockSpec` and override
`build_model` (one Keras model) or `fit_models` (several, e.g. the ensemble's members; or a formula without
Keras, the baselines of `stock_baselines`); the rest of `train` is shared.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlops_onnx.baselines import baseline_forecasts, baseline_metrics
from mlops_onnx.datasets import STOCKS
from mlops_onnx.models import EpochCallback, ModelSpec, Predictor, Scored, TestRows, TrainResult, profile_config
from mlops_onnx.models.stock_splits import (
    SplitData,
    TrainingWindows,
    per_ticker_metrics,
    plot_forecasts,
    row_ids,
    split_data,
    split_periods,
    training_windows,
)
from mlops_onnx.parity import ParityRules
from mlops_onnx.settings import Settings
from mlops_onnx.snapshots import Snapshot
from mlops_onnx.timeseries import FEATURES, FeatureScaler, TickerSeries, forecast_metrics, load_series, windows
from mlops_onnx.validation import ValidationReport, load_report
from mlops_onnx.validation.stocks import StockChecks, ticker_of, validate_stocks

PREPROCESSING_FILE = "stock_preprocessing.json"
TICKERS_FILE = "stock_tickers.json"


@dataclass(frozen=True)
class StockConfig:
    window: int = 30  # trading days per input sequence
    # Fixed split boundaries by the day forecast (the Kaggle archive ends 2017-11-10: a year each of
    # validation and test). Rows added later are test rows; moving a boundary is a config change.
    val_start: str = "2015-11-11"
    test_start: str = "2016-11-11"
    max_test_days: int | None = None  # per ticker, the first test days only (MLOPS_MAX_TEST_DAYS); None = all
    max_train_windows: int = 2500  # per ticker, the most recent before validation (about ten years)
    min_train_windows: int = 500  # a ticker with fewer before `val_start` is left out of training (and listed)
    max_tickers: int | None = 100  # longest histories first; None = every eligible ticker
    units: int = 32
    dropout: float = 0.1
    epochs: int = 30
    batch_size: int = 256
    # Training windows an epoch samples (fresh each epoch; None = all of them): an epoch's cost is bounded
    # however many tickers and years train (100 tickers × 2,500 windows would be 250,000 an epoch).
    windows_per_epoch: int | None = 50_000
    learning_rate: float = 1e-3
    patience: int = 5
    feature_clip: float = 8.0  # scaled features beyond ±8 std (bad ticks, splits) are clipped
    plot_tickers: int = 3
    seed: int = 42


QUICK = StockConfig(
    window=20,
    val_start="2017-05-19",
    test_start="2017-08-17",
    max_train_windows=300,
    min_train_windows=100,
    max_tickers=8,
    units=16,
    epochs=3,
    patience=2,
    plot_tickers=2,
    windows_per_epoch=None,
)


@dataclass
class FittedModel:
    """What `StockSpec.fit_models` hands back to `train`."""

    predict: Predictor  # scaled windows [rows, window, features] -> predicted log returns [rows]
    metrics: dict[str, float]  # from fitting: the best validation loss, the epochs run
    params: dict[str, Any]  # the parameter count


def forecast_head(keras, x, target_scale: float):
    """The log-return output every stock candidate shares, on top of its [batch, features] summary."""
    # Zero-initialised head: training starts from the naive forecast (return 0) and moves away only where that helps.
    x = keras.layers.Dense(1, kernel_initializer="zeros", name="scaled_return")(x)
    return keras.layers.Rescaling(target_scale, name="log_return")(x)  # train in ~unit scale, output returns


def select_files(report: dict, tickers: tuple[str, ...] | None) -> list[str]:
    """Passing files (of the configured tickers), longest histories first."""
    eligible = [f for f in report["passing_files"] if tickers is None or ticker_of(f) in tickers]
    return sorted(eligible, key=lambda f: (-(report["files"][f]["rows"] or 0), f))


def load_ticker(snapshot: Snapshot, file: str, cfg: StockConfig) -> TickerSeries:
    """One file read on its own and trimmed to the rows its splits need."""
    return load_series(
        snapshot.path / file,
        ticker_of(file),
        cfg.window,
        cfg.val_start,
        cfg.test_start,
        cfg.max_train_windows,
        cfg.max_test_days,
        cfg.min_train_windows,
    )


def choose_tickers(snapshot: Snapshot, files: list[str], cfg: StockConfig) -> tuple[dict[str, TickerSeries], dict]:
    """The first `max_tickers` files whose dates cover the splits (file -> series), and why each file passed
    over was left out."""
    chosen, left_out = {}, {}
    for file in files:
        if cfg.max_tickers is not None and len(chosen) >= cfg.max_tickers:
            break
        try:
            chosen[file] = load_ticker(snapshot, file, cfg)
        except ValueError as exc:
            left_out[file] = str(exc).removeprefix(f"{snapshot.path / file}: ")
    return chosen, left_out


def load_tickers(snapshot: Snapshot, files: list[str], cfg: StockConfig) -> list[TickerSeries]:
    return [load_ticker(snapshot, f, cfg) for f in files]


class StockSpec(ModelSpec):
    name = "stock_forecaster"
    architecture = "lstm"
    dataset = STOCKS
    primary_metric = "test_mase"
    higher_is_better = False
    default_gate_min = 1.0  # gate: test MASE ≤ 1, i.e. not worse than the naive forecast on the test days
    gate_hard_limit = 1.0  # MLOPS_GATE_STOCK_FORECASTER may make the gate stricter, never let a loser to naive in
    parity_rules = ParityRules(
        fp32_max_abs_diff=1e-4,
        quality_name="mae",
        higher_is_better=False,
        relative_drop=True,
        variant_max_quality_drop=0.02,
    )
    variants = ("int8_dynamic", "fp16")
    toolchain = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime")
    onnx_input_name = "window"
    framework = "keras"
    checkpoint_name = "model.keras"
    speedup_target = 10.0

    def build_model(self, cfg: StockConfig, target_scale: float):
        """Plain `LSTM` (no recurrent dropout, no masking) so tf2onnx emits one fused ONNX `LSTM` op."""
        from mlops_onnx.models.keras_native import load_keras

        keras = load_keras()
        inputs = keras.Input((cfg.window, len(FEATURES)), name="window")
        x = keras.layers.LSTM(cfg.units, name="lstm")(inputs)
        x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
        return keras.Model(inputs, forecast_head(keras, x, target_scale), name="stock_lstm")

    def fit_models(
        self,
        cfg: StockConfig,
        batches: TrainingWindows,
        val: SplitData,
        target_scale: float,
        checkpoint: Path,
        on_epoch: EpochCallback,
        workdir: Path | None = None,
    ) -> FittedModel:
        """Seed, build, fit and save the model at `checkpoint`. `batches()` is a fresh pass over the shuffled
        training batches (the same order on every call). Seeded here, right before the build, so a model
        fitted inside another candidate (an ensemble's member) starts as it does as a candidate of its own;
        with the candidate's `workdir`, one fitted by another candidate of the night here is copied instead."""
        from mlops_onnx.models.keras_native import compile_and_fit, load_keras
        from mlops_onnx.models.stock_members import fit_key, fit_once, fitted_keras

        def fit() -> tuple[Predictor, dict, dict]:
            load_keras().utils.set_random_seed(cfg.seed)
            model = self.build_model(cfg, target_scale)
            history = compile_and_fit(
                model,
                batches(),
                (val.inputs, val.targets[:, None]),
                learning_rate=cfg.learning_rate,
                loss="mae",
                epochs=cfg.epochs,
                patience=cfg.patience,
                on_epoch=on_epoch,
                logged={"train_loss": "loss", "val_loss": "val_loss"},
            )
            model.save(checkpoint)
            return fitted_keras(model, history)

        key = fit_key(self.architecture, cfg, target_scale, val.inputs, val.targets)
        return FittedModel(*fit_once(self.architecture, key, checkpoint, workdir, fit))

    def model_params(self, cfg: StockConfig) -> dict:
        """What names the architecture in the run's params."""
        return {"recurrent_layer": "keras.layers.LSTM"}

    def train_config(self, settings: Settings) -> StockConfig:
        cfg = profile_config(
            settings,
            StockConfig(),
            QUICK,
            epochs="epochs",
            max_train_windows="max_train_rows",
            max_test_days="max_test_days",
        )
        if settings.stock_max_tickers is not None:  # 0: every ticker that passes validation
            cfg = replace(cfg, max_tickers=settings.stock_max_tickers or None)
        return cfg

    def resolved_config(self, settings: Settings) -> dict:
        """Also what decides which tickers train: the tickers asked for and the validation rules that
        quarantine short files (MLOPS_STOCK_MIN_ROWS) or fail the snapshot."""
        return super().resolved_config(settings) | {
            "stock_tickers": list(settings.stock_tickers or []),
            "validation": {"stock_min_rows": settings.stock_min_rows, "stock_min_tickers": settings.stock_min_tickers},
        }

    def validate(self, snapshot: Snapshot, settings: Settings) -> ValidationReport:
        checks = StockChecks(min_rows=settings.stock_min_rows, min_passing=settings.stock_min_tickers)
        return validate_stocks(snapshot.path, snapshot.content_hash, snapshot.files, checks, settings.stock_tickers)

    def train(self, snapshot: Snapshot, workdir: Path, settings: Settings, on_epoch: EpochCallback) -> TrainResult:
        cfg = self.train_config(settings)
        eligible = select_files(load_report(workdir), settings.stock_tickers)
        chosen, left_out = choose_tickers(snapshot, eligible, cfg)
        if not chosen:
            raise ValueError(
                f"no ticker to train on: of the passing files {eligible[:20]} (MLOPS_STOCK_TICKERS="
                f"{','.join(settings.stock_tickers or ()) or 'all'}) none covers the splits: "
                f"{left_out}"
            )
        files, series = list(chosen), list(chosen.values())
        scaler = FeatureScaler.fit([s.train_rows(cfg.window) for s in series], cfg.feature_clip)
        # Called, a fresh pass over the shuffled batches: every model fitted here sees the same order.
        training = training_windows(series, scaler, cfg.window, cfg.batch_size, cfg.seed, cfg.windows_per_epoch)
        val = split_data(series, scaler, cfg.window, "val")
        target_scale = float(np.std(training.targets))
        checkpoint = workdir / self.checkpoint_name
        fitted = self.fit_models(cfg, training, val, target_scale, checkpoint, on_epoch, workdir)

        test = split_data(series, scaler, cfg.window, "test")
        val.predicted = fitted.predict(val.inputs)
        test.predicted = fitted.predict(test.inputs)
        val_metrics = forecast_metrics(val.close_now, val.close_next, val.predicted, "val", val.tickers)
        metrics = forecast_metrics(test.close_now, test.close_next, test.predicted, "test", test.tickers)
        metrics.update(
            {
                "val_mase": val_metrics["val_mase"],
                "val_mae": val_metrics["val_mae"],
                "tickers_left_out": float(len(left_out)),
                "naive_val_mae": val_metrics["naive_val_mae"],
                **fitted.metrics,
                "tickers_used": float(len(files)),
                "train_windows": float(len(training.origins)),
                "val_windows": float(len(val.targets)),
                "test_windows": float(len(test.targets)),
            }
        )
        started = time.perf_counter()
        baselines = baseline_forecasts(series)
        metrics.update(
            baseline_metrics(test.close_now, test.close_next, test.dates, test.tickers, test.predicted, baselines)
        )
        metrics["baseline_seconds"] = time.perf_counter() - started

        preprocessing = scaler.to_json(
            workdir / PREPROCESSING_FILE,
            window=cfg.window,
            input=self.onnx_input_name,
            input_shape=["batch", cfg.window, len(FEATURES)],
            output="log_return: predicted log(C[t+1] / C[t]); forecast close = C[t] * exp(log_return)",
            usage="features from mlops_onnx.timeseries.make_features, then (x - mean) / std clipped to ±clip",
        )
        selection = (
            f"passing files{' of MLOPS_STOCK_TICKERS' if settings.stock_tickers else ''}, "
            f"longest histories first, at most {cfg.max_tickers} of {len(eligible)} whose dates cover "
            f"the splits (validation from {cfg.val_start}, test from {cfg.test_start})"
        )
        tickers_path = workdir / TICKERS_FILE
        tickers_path.write_text(
            json.dumps(
                {"files": files, "selection": selection, "left_out": left_out, "periods": split_periods(series)},
                indent=2,
            )
        )
        by_ticker_path = workdir / "test_metrics_by_ticker.json"
        by_ticker_path.write_text(json.dumps(per_ticker_metrics(test), indent=2))
        plots = plot_forecasts(
            test, [s.ticker for s in series[: cfg.plot_tickers]], workdir, f"{self.architecture} forecast"
        )

        params = asdict(cfg)
        params.update(
            {
                **self.model_params(cfg),
                "architecture": self.architecture,
                "features": ",".join(FEATURES),
                "target": "next-day log return",
                "loss": "mae",
                **fitted.params,
                "tickers": ",".join(s.ticker for s in series)[:500],
            }
        )
        return TrainResult(
            checkpoint=checkpoint,
            metrics=metrics,
            params=params,
            preprocessing=[preprocessing],
            evaluation_files=[tickers_path],
            artifacts=[tickers_path, by_ticker_path, *plots],
            validation=Scored(replace(self.evaluation_rows(val), inputs=np.empty(0, np.float32)), val.predicted),
        )

    def export_onnx(self, checkpoint: Path, out_path: Path) -> None:
        from mlops_onnx.models.keras_native import export_keras_onnx

        export_keras_onnx(checkpoint, out_path, self.onnx_input_name, "float32")

    def evaluation_rows(self, data: SplitData) -> TestRows:
        """A split's windows as `TestRows`: ids `ticker:date`, and the closes, tickers and days the daily
        MASE and the Diebold–Mariano test read."""
        extra = {"close_now": data.close_now, "close_next": data.close_next, "ticker": data.tickers, "day": data.dates}
        return TestRows(ids=row_ids(data), inputs=data.inputs, targets=data.targets, extra=extra)

    def evaluation_data(
        self, snapshot: Snapshot, settings: Settings, workdir: Path, preprocessing: Path | None = None
    ) -> TestRows:
        """The test days of the tickers `train` used, as windows of the model whose scaler (and window
        length) is in `preprocessing`, with their log returns and what price-level metrics need."""
        scaler_file = (preprocessing or workdir) / PREPROCESSING_FILE
        window = int(json.loads(scaler_file.read_text())["window"])  # another model's window: its own look-back
        cfg = replace(self.train_config(settings), window=window, min_train_windows=0)  # the same forecast days
        series = load_tickers(snapshot, self._files(workdir), cfg)
        return self.evaluation_rows(split_data(series, FeatureScaler.from_json(scaler_file), window, "test"))

    def parity_strata(self, rows: TestRows) -> np.ndarray:
        """By ticker: every ticker's windows are compared, the quiet and the volatile alike."""
        return rows.extra["ticker"]

    def drift_frame(self, snapshot: Snapshot, settings: Settings, workdir: Path, preprocessing: Path | None = None):
        """Per trading day of (up to 200 of) tonight's passing tickers: the daily log return, log volume and
        log range, and the ticker's kind (stock or ETF)."""
        import pandas as pd

        from mlops_onnx.drift import sample
        from mlops_onnx.timeseries import read_ticker

        files = select_files(load_report(workdir), settings.stock_tickers)
        if len(files) > 200:
            files = sorted(np.random.default_rng(settings.seed).choice(files, 200, replace=False))
        frames = []
        for file in files:
            if not (snapshot.path / file).is_file():
                continue
            frame = read_ticker(snapshot.path / file)
            frames.append(
                pd.DataFrame(
                    {
                        "kind": file.split("/")[0],
                        "daily_return": np.log(frame["Close"]).diff(),
                        "log_volume": np.log1p(frame["Volume"].astype(float)),
                        "log_range": np.log(frame["High"] / frame["Low"]),
                    }
                ).iloc[1:]
            )
        if not frames:
            return None
        return sample(pd.concat(frames, ignore_index=True), settings.drift_max_rows, settings.seed)

    @staticmethod
    def _files(workdir: Path) -> list[str]:
        """The ticker files `train` used (its `stock_tickers.json`)."""
        return json.loads((workdir / TICKERS_FILE).read_text())["files"]

    def head_to_head(self, candidate: np.ndarray, champion: np.ndarray, rows: TestRows):
        """Daily MASE of both on the same days and the one-sided Diebold–Mariano test on its daily differences."""
        from mlops_onnx.decisions import forecast_head_to_head

        return forecast_head_to_head(candidate, champion, rows)

    def calibration_data(self, snapshot: Snapshot, settings: Settings, workdir: Path, rows: int) -> np.ndarray:
        cfg = self.train_config(settings)
        series = load_tickers(snapshot, self._files(workdir), cfg)
        scaler = FeatureScaler.from_json(workdir / PREPROCESSING_FILE)
        per_ticker = -(-rows // len(series))  # the most recent training windows of every ticker
        return np.concatenate(
            [windows(scaler.transform(s.features), s.origins["train"][-per_ticker:], cfg.window) for s in series]
        )[:rows]

    def native_predictors(
        self, checkpoint: Path, settings: Settings, device: str = "cpu", compiled: bool = False
    ) -> dict[str, Predictor]:
        from mlops_onnx.models.keras_native import keras_predictors

        return keras_predictors(checkpoint, settings, device, compiled)

    def quality(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        """MAE of the predicted next-day log returns (the model's output units)."""
        return float(np.mean(np.abs(outputs.reshape(-1) - targets.reshape(-1))))


SPEC = StockSpec()

"""Feature engineering for the stock forecaster: per-ticker features, chronological splits, windows, scaler.

Every feature at row t uses rows ≤ t only (trailing windows, `shift` into the past, never into the
future), so a change to day t+1 and later cannot alter the features of day t; the target of row t
is the *next* day's log return log(C[t+1] / C[t]). Splits are by the date a forecast is for, with
fixed boundaries (`val_start`, `test_start`): a day forecast before `val_start` is training, from
`test_start` on it is test. Rows appended to the archive later land in test, never in training, so
a champion was never trained on a later night's test days. The scaler sees only training rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = (
    "ret_1",  # log(C[t] / C[t-1])
    "ret_5",  # log(C[t] / C[t-5])
    "ret_20",  # log(C[t] / C[t-20])
    "ma_5_gap",  # log(C[t] / mean(C[t-4..t]))
    "ma_20_gap",  # log(C[t] / mean(C[t-19..t]))
    "volatility_20",  # std of ret_1 over t-19..t
    "range",  # log(High[t] / Low[t])
    "body",  # log(C[t] / Open[t])
    "volume_change",  # log1p(V[t]) - log1p(V[t-1]); finite on Volume=0 days
    "volume_vs_20d",  # log1p(V[t]) - mean(log1p(V[t-19..t]))
)
WARMUP = 20  # rows before the first row whose every feature is defined (ret_20, volatility_20)


def read_ticker(path: Path) -> pd.DataFrame:
    """A ticker file (`Date,Open,High,Low,Close,Volume,OpenInt`, CRLF) with parsed dates, oldest first."""
    frame = pd.read_csv(path, usecols=["Date", "Open", "High", "Low", "Close", "Volume"])
    frame["Date"] = pd.to_datetime(frame["Date"], format="%Y-%m-%d")
    return frame


def make_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The FEATURES of every row from that row and earlier ones; the first WARMUP rows have NaNs."""
    close = frame["Close"].astype(float)
    log_close = np.log(close)
    log_volume = np.log1p(frame["Volume"].astype(float))
    ret_1 = log_close.diff()
    return pd.DataFrame(
        {
            "ret_1": ret_1,
            "ret_5": log_close.diff(5),
            "ret_20": log_close.diff(20),
            "ma_5_gap": log_close - np.log(close.rolling(5).mean()),
            "ma_20_gap": log_close - np.log(close.rolling(20).mean()),
            "volatility_20": ret_1.rolling(20).std(),
            "range": np.log(frame["High"] / frame["Low"]),
            "body": log_close - np.log(frame["Open"]),
            "volume_change": log_volume.diff(),
            "volume_vs_20d": log_volume - log_volume.rolling(20).mean(),
        },
        index=frame.index,
    )[list(FEATURES)]


def next_day_log_return(close: np.ndarray) -> np.ndarray:
    """log(C[t+1] / C[t]) for every row; NaN on the last row (no next day)."""
    close = np.asarray(close, dtype=np.float64)
    return np.append(np.log(close[1:] / close[:-1]), np.nan)


def split_origins(
    dates: np.ndarray,
    window: int,
    val_start: str,
    test_start: str,
    max_train: int | None = None,
    max_test: int | None = None,
) -> dict[str, np.ndarray]:
    """Row indices of the forecast origins (a window's last row) of each split, chronological.

    An origin t needs a full window of defined features (t ≥ WARMUP + window - 1) and a next day; it
    belongs to the split of the day it forecasts, dates[t + 1]: training before `val_start` (the most
    recent `max_train` of them), validation before `test_start`, test from `test_start` on (its first
    `max_test` days).
    """
    origins = np.arange(WARMUP + window - 1, len(dates) - 1)
    forecast_day = np.asarray(dates)[origins + 1]
    val_day, test_day = np.datetime64(val_start, "ns"), np.datetime64(test_start, "ns")
    if not val_day < test_day:
        raise ValueError(f"val_start {val_start} must be before test_start {test_start}")
    train = origins[forecast_day < val_day]
    val = origins[(forecast_day >= val_day) & (forecast_day < test_day)]
    test = origins[forecast_day >= test_day][:max_test]
    if max_train is not None:
        train = train[len(train) - min(max_train, len(train)) :]
    return {"train": train, "val": val, "test": test}


@dataclass
class TickerSeries:
    """One ticker's raw (unscaled) features, closes and dates, with its split origins."""

    ticker: str
    dates: np.ndarray  # datetime64[ns], one per row
    close: np.ndarray  # float64
    features: np.ndarray  # float32 [rows, len(FEATURES)], unscaled
    origins: dict[str, np.ndarray]

    def targets(self, split: str) -> np.ndarray:
        """Next-day log returns at the split's origins (the model's output units)."""
        t = self.origins[split]
        return np.log(self.close[t + 1] / self.close[t])

    def train_rows(self, window: int) -> np.ndarray:
        """Feature rows that training windows read: the only rows the scaler may see."""
        train = self.origins["train"]
        return self.features[train[0] - window + 1 : train[-1] + 1] if len(train) else self.features[:0]


def load_series(
    path: Path,
    ticker: str,
    window: int,
    val_start: str,
    test_start: str,
    max_train: int | None,
    max_test: int | None = None,
    min_train: int = 1,
) -> TickerSeries:
    """Read one ticker file and keep only the rows its splits need (the archive is never held whole).
    A ticker without `min_train` training windows, or without a validation or test day, raises ValueError."""
    frame = read_ticker(path)
    dates = frame["Date"].to_numpy()
    origins = split_origins(dates, window, val_start, test_start, max_train, max_test)
    sizes = {name: len(o) for name, o in origins.items()}
    if sizes["train"] < min_train or not sizes["val"] or not sizes["test"]:
        span = f"{str(dates[0])[:10]}..{str(dates[-1])[:10]}" if len(dates) else "no rows"
        raise ValueError(
            f"{path}: {span} gives {sizes['train']} training window(s) (at least {min_train} needed) "
            f"before {val_start}, {sizes['val']} validation and {sizes['test']} test day(s) from "
            f"{test_start}"
        )
    features = make_features(frame).to_numpy(dtype=np.float32)
    first = max(min(o[0] for o in origins.values() if len(o)) - window + 1, 0)
    return TickerSeries(
        ticker=ticker,
        dates=dates[first:],
        close=frame["Close"].to_numpy(dtype=np.float64)[first:],
        features=features[first:],
        origins={name: o - first for name, o in origins.items()},
    )


def windows(features: np.ndarray, origins: np.ndarray, window: int) -> np.ndarray:
    """float32 [len(origins), window, features]: the `window` rows ending at each origin."""
    rows = origins[:, None] + np.arange(-window + 1, 1)[None, :]
    return np.ascontiguousarray(features[rows], dtype=np.float32)


@dataclass
class FeatureScaler:
    """Standardisation fitted on training rows only, then clipped to ±clip standard deviations.

    Saved as JSON beside the model: serving applies it to raw features before the ONNX model.
    """

    mean: np.ndarray
    std: np.ndarray
    clip: float

    @classmethod
    def fit(cls, blocks: list[np.ndarray], clip: float) -> FeatureScaler:
        """Fit from per-ticker blocks of training rows, accumulated in float64 (one ticker at a time)."""
        count, total, squares = 0, 0.0, 0.0
        for block in blocks:
            values = block.astype(np.float64)
            count += len(values)
            total = total + values.sum(axis=0)
            squares = squares + (values**2).sum(axis=0)
        if count == 0:
            raise ValueError("no training rows to fit the feature scaler on")
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        return cls(mean=mean, std=np.where(std > 1e-12, std, 1.0), clip=clip)

    def transform(self, features: np.ndarray) -> np.ndarray:
        scaled = (features.astype(np.float64) - self.mean) / self.std
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def to_json(self, path: Path, **extra) -> Path:
        payload = {
            "features": list(FEATURES),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "clip": self.clip,
            **extra,
        }
        path.write_text(json.dumps(payload, indent=2))
        return path

    @classmethod
    def from_json(cls, path: Path) -> FeatureScaler:
        payload = json.loads(path.read_text())
        if tuple(payload["features"]) != FEATURES:
            raise ValueError(f"{path}: scaler features {payload['features']} differ from {list(FEATURES)}")
        return cls(mean=np.array(payload["mean"]), std=np.array(payload["std"]), clip=float(payload["clip"]))


def scaled_errors(
    close_now: np.ndarray, close_next: np.ndarray, predicted_log_return: np.ndarray, tickers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Absolute price errors of the model's and of the naive forecast, each divided by its ticker's naive
    MAE on these rows: a ticker's errors count in units of its own day-to-day moves, so a $500 stock
    weighs as much as a $5 one. NaN for a ticker whose price never moved."""
    forecast = close_now * np.exp(np.asarray(predicted_log_return, dtype=np.float64).reshape(-1))
    model_error, naive_error = np.abs(forecast - close_next), np.abs(close_now - close_next)
    scale = pd.Series(naive_error).groupby(np.asarray(tickers)).transform("mean").to_numpy()
    scale = np.where(scale > 0, scale, np.nan)
    return model_error / scale, naive_error / scale


def forecast_metrics(
    close_now: np.ndarray,
    close_next: np.ndarray,
    predicted_log_return: np.ndarray,
    prefix: str,
    tickers: np.ndarray | None = None,
) -> dict[str, float]:
    """Price-level metrics of a next-day forecast C[t]·exp(prediction) and of the naive forecast C[t].

    MASE: the mean of each forecast's absolute error divided by its ticker's naive MAE over the same
    rows (see `scaled_errors`; `pooled_mase`): the naive forecast scores exactly 1, below 1 beats it. MAE,
    RMSE and MAPE are pooled in price units; directional accuracy counts days whose actual close changed.
    """
    forecast = close_now * np.exp(np.asarray(predicted_log_return, dtype=np.float64).reshape(-1))
    error, naive_error = forecast - close_next, close_now - close_next
    moved = close_next != close_now  # a day without a price change has no direction to get right
    direction_hits = np.sign(forecast - close_now)[moved] == np.sign(close_next - close_now)[moved]
    mase = pooled_mase(error, naive_error, np.zeros(len(close_now)) if tickers is None else tickers)
    metrics = {
        f"{prefix}_mae": float(np.mean(np.abs(error))),
        f"{prefix}_rmse": float(np.sqrt(np.mean(error**2))),
        f"{prefix}_mape": float(np.mean(np.abs(error) / close_next) * 100),
        f"{prefix}_directional_accuracy": float(np.mean(direction_hits)),
        f"{prefix}_mase": mase,
        f"naive_{prefix}_mae": float(np.mean(np.abs(naive_error))),
        f"naive_{prefix}_rmse": float(np.sqrt(np.mean(naive_error**2))),
        f"naive_{prefix}_mape": float(np.mean(np.abs(naive_error) / close_next) * 100),
    }
    return metrics


def pooled_mase(error: np.ndarray, naive_error: np.ndarray, tickers: np.ndarray) -> float:
    """The mean over rows of |error| / the ticker's naive MAE (`scaled_errors`), summed per ticker as
    rows · (Σ|error| / Σ|naive error|): the same number, but exactly 1 for the naive forecast itself, where the
    mean of the row ratios rounds to 1 ± 1e-16, which the gate (MASE ≤ 1) would read as worse than naive.
    Tickers whose price never moved have no scale and are left out; NaN when none is left."""
    frame = pd.DataFrame({"ticker": np.asarray(tickers), "error": np.abs(error), "naive": np.abs(naive_error)})
    sums = frame.groupby("ticker").agg(rows=("error", "size"), error=("error", "sum"), naive=("naive", "sum"))
    sums = sums[sums["naive"] > 0]
    if sums.empty:
        return float("nan")
    return float((sums["rows"] * (sums["error"] / sums["naive"])).sum() / sums["rows"].sum())


def daily_loss_differential(days: np.ndarray, loss_a: np.ndarray, loss_b: np.ndarray) -> pd.Series:
    """d_t = mean over the tickers forecast for day t of (loss_a − loss_b): one value per day, the series the
    Diebold–Mariano test reads (tickers are pooled within a day; days are the time axis)."""
    frame = pd.DataFrame({"day": days, "d": np.asarray(loss_a) - np.asarray(loss_b)}).dropna()
    return frame.groupby("day")["d"].mean().sort_index()

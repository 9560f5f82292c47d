"""Feature engineering for the stock forecaster: per-ticker features, chronological splits, windows, scaler.

Every feature at row t uses rows ≤ t only (trailing windows, `shift` into the past, never into the
future), so a change to day t+1 and later cannot alter the features of day t; the target of row t
is the *next* day's log return log(C[t+1] / C[t]). Splits are by date within each ticker: the
last `test_days` forecast origins are the test period, the `val_days` before them validation, and
up to `max_train` origins before those training. The scaler sees only training rows.
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
    return pd.DataFrame({
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
    }, index=frame.index)[list(FEATURES)]  # fmt: skip


def next_day_log_return(close: np.ndarray) -> np.ndarray:
    """log(C[t+1] / C[t]) for every row; NaN on the last row (no next day)."""
    close = np.asarray(close, dtype=np.float64)
    return np.append(np.log(close[1:] / close[:-1]), np.nan)


def split_origins(rows: int, window: int, val_days: int, test_days: int,
                  max_train: int | None) -> dict[str, np.ndarray]:  # fmt: skip
    """Row indices of the forecast origins (a window's last row) of each split, chronological.

    An origin t needs a full window of defined features (t ≥ WARMUP + window - 1) and a next day
    (t ≤ rows - 2). Test takes the last `test_days` origins, validation the `val_days` before them,
    training the rest (the most recent `max_train` of them).
    """
    origins = np.arange(WARMUP + window - 1, rows - 1)
    if len(origins) < val_days + test_days + 1:
        raise ValueError(
            f"{rows} rows give {len(origins)} forecast origin(s) for a {window}-day window; "
            f"at least {val_days + test_days + 1} needed (val {val_days} + test {test_days} + 1 train)"
        )
    test = origins[len(origins) - test_days :] if test_days else origins[:0]
    val = origins[max(len(origins) - test_days - val_days, 0) : len(origins) - test_days]
    train = origins[: max(len(origins) - test_days - val_days, 0)]
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


def load_series(path: Path, ticker: str, window: int, val_days: int, test_days: int,
                max_train: int | None) -> TickerSeries:  # fmt: skip
    """Read one ticker file and keep only the rows its splits need (the archive is never held whole)."""
    frame = read_ticker(path)
    try:
        origins = split_origins(len(frame), window, val_days, test_days, max_train)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    features = make_features(frame).to_numpy(dtype=np.float32)
    first = min((o[0] for o in origins.values() if len(o)), default=0) - window + 1
    first = max(first, 0)
    return TickerSeries(
        ticker=ticker,
        dates=frame["Date"].to_numpy()[first:],
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
        payload = {"features": list(FEATURES), "mean": self.mean.tolist(), "std": self.std.tolist(),
                   "clip": self.clip, **extra}  # fmt: skip
        path.write_text(json.dumps(payload, indent=2))
        return path

    @classmethod
    def from_json(cls, path: Path) -> FeatureScaler:
        payload = json.loads(path.read_text())
        if tuple(payload["features"]) != FEATURES:
            raise ValueError(f"{path}: scaler features {payload['features']} differ from {list(FEATURES)}")
        return cls(mean=np.array(payload["mean"]), std=np.array(payload["std"]), clip=float(payload["clip"]))


def forecast_metrics(close_now: np.ndarray, close_next: np.ndarray, predicted_log_return: np.ndarray,
                     prefix: str) -> dict[str, float]:  # fmt: skip
    """Price-level metrics of a next-day forecast C[t]·exp(prediction) and of the naive forecast C[t].

    MASE = model MAE / naive MAE on the same points (< 1: better than tomorrow = today). Directional
    accuracy counts days whose actual close changed; MAPE is in percent.
    """
    forecast = close_now * np.exp(np.asarray(predicted_log_return, dtype=np.float64).reshape(-1))
    error, naive_error = forecast - close_next, close_now - close_next
    moved = close_next != close_now  # a day without a price change has no direction to get right
    direction_hits = np.sign(forecast - close_now)[moved] == np.sign(close_next - close_now)[moved]
    metrics = {
        f"{prefix}_mae": float(np.mean(np.abs(error))),
        f"{prefix}_rmse": float(np.sqrt(np.mean(error**2))),
        f"{prefix}_mape": float(np.mean(np.abs(error) / close_next) * 100),
        f"{prefix}_directional_accuracy": float(np.mean(direction_hits)),
        f"naive_{prefix}_mae": float(np.mean(np.abs(naive_error))),
        f"naive_{prefix}_rmse": float(np.sqrt(np.mean(naive_error**2))),
        f"naive_{prefix}_mape": float(np.mean(np.abs(naive_error) / close_next) * 100),
    }  # fmt: skip
    metrics[f"{prefix}_mase"] = metrics[f"{prefix}_mae"] / metrics[f"naive_{prefix}_mae"]
    return metrics

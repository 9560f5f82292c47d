"""A stock model's test and validation splits as windows, its training batches, and the reports of its
forecasts: what `stocks.StockSpec` computes over per-ticker series (see `mlops_onnx.timeseries`).
Keras is imported only when training batches are made."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlops_onnx.timeseries import FeatureScaler, TickerSeries, forecast_metrics, windows


@dataclass
class SplitData:
    """One split's windows over every ticker, with what price-level metrics need."""

    inputs: np.ndarray  # float32 [n, window, features], scaled
    targets: np.ndarray  # float32 [n], next-day log returns
    close_now: np.ndarray
    close_next: np.ndarray
    dates: np.ndarray  # the date of each forecast's target day
    tickers: np.ndarray
    predicted: np.ndarray | None = None  # the model's log returns, once predicted


def split_data(series: list[TickerSeries], scaler: FeatureScaler, window: int, split: str) -> SplitData:
    parts = []
    for s in series:
        t = s.origins[split]
        parts.append(
            (
                windows(scaler.transform(s.features), t, window),
                s.targets(split).astype(np.float32),
                s.close[t],
                s.close[t + 1],
                s.dates[t + 1],
                np.full(len(t), s.ticker),
            )
        )
    return SplitData(*(np.concatenate(column) for column in zip(*parts)))


def row_ids(data: SplitData) -> np.ndarray:
    """`ticker:YYYY-MM-DD` of the day forecast: the same row on every night."""
    return np.array([f"{t}:{str(d)[:10]}" for t, d in zip(data.tickers, data.dates)])


def window_batches(series: list[TickerSeries], scaler: FeatureScaler, window: int, batch_size: int, seed: int):
    """Shuffled training batches gathered from per-ticker feature rows (a `keras.utils.PyDataset`): windows are
    never materialised."""
    from mlops_onnx.models.keras_native import load_keras

    class WindowBatches(load_keras().utils.PyDataset):
        def __init__(
            self, series: list[TickerSeries], scaler: FeatureScaler, window: int, batch_size: int, seed: int
        ) -> None:
            super().__init__()
            offsets = np.cumsum([0] + [len(s.features) for s in series])
            self.features = np.concatenate([scaler.transform(s.features) for s in series])
            self.origins = np.concatenate([s.origins["train"] + o for s, o in zip(series, offsets)])
            self.targets = np.concatenate([s.targets("train") for s in series]).astype(np.float32)
            self.window, self.batch_size = window, batch_size
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(self.origins))

        def __len__(self) -> int:
            return -(-len(self.origins) // self.batch_size)

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            picked = self.order[index * self.batch_size : (index + 1) * self.batch_size]
            return windows(self.features, self.origins[picked], self.window), self.targets[picked, None]

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(self.origins))

    return WindowBatches(series, scaler, window, batch_size, seed)


def plot_forecasts(data: SplitData, tickers: list[str], workdir: Path, label: str = "model forecast") -> list[Path]:
    """Test-period close vs the model's and the naive forecast, and actual vs predicted returns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for ticker in tickers:
        rows = data.tickers == ticker
        predicted_close = data.close_now[rows] * np.exp(data.predicted[rows])
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=(2, 1))
        top.plot(data.dates[rows], data.close_next[rows], label="actual close", color="black", linewidth=1.2)
        top.plot(data.dates[rows], predicted_close, label=label, color="tab:blue", linewidth=1)
        top.plot(
            data.dates[rows],
            data.close_now[rows],
            label="naive (yesterday's close)",
            color="tab:orange",
            linewidth=0.8,
            linestyle="--",
        )
        top.set_ylabel("close")
        top.set_title(f"{ticker}: next-day close forecast, test period")
        top.legend(loc="best", fontsize=8)
        bottom.bar(data.dates[rows], data.targets[rows], color="lightgray", label="actual log return")
        bottom.plot(data.dates[rows], data.predicted[rows], color="tab:blue", linewidth=1, label="predicted")
        bottom.set_ylabel("log return")
        bottom.legend(loc="best", fontsize=8)
        fig.tight_layout()
        path = workdir / f"forecast_{ticker}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def split_periods(series: list[TickerSeries]) -> dict[str, dict[str, list[str]]]:
    """First and last forecast-origin date of each split, per ticker."""
    return {
        s.ticker: {split: [str(s.dates[o[0]])[:10], str(s.dates[o[-1]])[:10]] for split, o in s.origins.items()}
        for s in series
    }


def per_ticker_metrics(data: SplitData) -> dict[str, dict[str, float]]:
    return {
        str(ticker): {
            **forecast_metrics(data.close_now[rows], data.close_next[rows], data.predicted[rows], "test"),
            "test_days": int(rows.sum()),
        }
        for ticker in np.unique(data.tickers)
        for rows in [data.tickers == ticker]
    }

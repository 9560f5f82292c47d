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


@dataclass
class TrainingWindows:
    """Every ticker's training windows, never materialised: the scaled feature rows of all tickers end to end,
    the training origins in them (a window is the `window` rows ending at its origin) and their targets.
    Called, it makes a fresh pass of shuffled Keras batches over them (`keras_batches`), in the same order on
    every call; a model without batches (a baseline) reads the arrays themselves, and Keras is never imported.
    With `per_epoch`, an epoch is a fresh seeded sample of that many training windows (without replacement),
    so an epoch costs the same however long the histories are."""

    features: np.ndarray  # float32 [rows, features], scaled
    origins: np.ndarray
    targets: np.ndarray  # float32 [len(origins)], next-day log returns
    scaler: FeatureScaler  # what `features` were scaled with
    window: int
    batch_size: int
    seed: int
    per_epoch: int | None = None

    def inputs(self, picked: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The windows of the `picked` origins, float32 [n, window, features]."""
        return windows(self.features, self.origins[picked], self.window)

    def __call__(self):
        return keras_batches(self)


def training_windows(
    series: list[TickerSeries],
    scaler: FeatureScaler,
    window: int,
    batch_size: int,
    seed: int,
    per_epoch: int | None = None,
) -> TrainingWindows:
    offsets = np.cumsum([0] + [len(s.features) for s in series])
    return TrainingWindows(
        features=np.concatenate([scaler.transform(s.features) for s in series]),
        origins=np.concatenate([s.origins["train"] + o for s, o in zip(series, offsets)]),
        targets=np.concatenate([s.targets("train") for s in series]).astype(np.float32),
        scaler=scaler,
        window=window,
        batch_size=batch_size,
        seed=seed,
        per_epoch=per_epoch,
    )


def window_batches(
    series: list[TickerSeries],
    scaler: FeatureScaler,
    window: int,
    batch_size: int,
    seed: int,
    per_epoch: int | None = None,
):
    """Shuffled training batches gathered from per-ticker feature rows (a `keras.utils.PyDataset`): windows are
    never materialised (`TrainingWindows`, `per_epoch`)."""
    return training_windows(series, scaler, window, batch_size, seed, per_epoch)()


def keras_batches(training: TrainingWindows):
    """A fresh pass of shuffled batches over the training windows (a `keras.utils.PyDataset`)."""
    from mlops_onnx.models.keras_native import load_keras

    class WindowBatches(load_keras().utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.training, self.origins, self.targets = training, training.origins, training.targets
            self.batch_size = training.batch_size
            per_epoch = training.per_epoch
            self.size = len(self.origins) if per_epoch is None else min(per_epoch, len(self.origins))
            self.rng = np.random.default_rng(training.seed)
            self.on_epoch_end()

        def __len__(self) -> int:
            return -(-self.size // self.batch_size)

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            picked = self.order[index * self.batch_size : (index + 1) * self.batch_size]
            return self.training.inputs(picked), self.targets[picked, None]

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(self.origins))[: self.size]

    return WindowBatches()


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

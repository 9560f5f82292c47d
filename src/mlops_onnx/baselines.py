"""Statistical baselines for the stock forecasters, scored on the neural model's own test rows.

Every stock candidate predicts the next-day log return r = log(C[t+1] / C[t]) and is scored on the close
C[t]·exp(r) (see `timeseries.forecast_metrics`), so each baseline here is a log-return forecast too,
for the same forecast origins t in the same row order as `stock_splits.split_data`:

- naive: r = 0, tomorrow's close is today's.
- drift: a random walk with drift in log price, r = the ticker's mean daily log return over its
  training part (the closes up to the last training target day), never later days.
- ets: additive-error, damped additive-trend exponential smoothing (statsmodels ETS "AAdN") of the log
  close, its parameters fitted on the ticker's training part only; each test day's forecast is the
  one-step-ahead forecast from the closes up to t with those fixed parameters (the state keeps
  filtering through validation and test, the parameters never see them).

MASE here is the project's: each absolute price error divided by its ticker's naive MAE on the same
rows (`timeseries.scaled_errors`), so naive scores exactly 1; "pooled" is the mean over all rows,
"ticker mean" the mean of the per-ticker MASEs (they differ when tickers have different test days).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from mlops_onnx.stats import diebold_mariano
from mlops_onnx.timeseries import TickerSeries, daily_loss_differential, forecast_metrics, scaled_errors

BASELINES = ("naive", "drift", "ets")
DM_AGAINST = ("naive", "drift")  # the one-sided Diebold–Mariano p-values logged for the model


def training_log_close(series: TickerSeries) -> np.ndarray:
    """Log closes from the series' first row to the last training target day (origin + 1)."""
    train = series.origins["train"]
    if not len(train):
        raise ValueError(f"{series.ticker}: no training origin to fit a baseline on")
    return np.log(series.close[: train[-1] + 2])


def naive_forecast(series: TickerSeries, origins: np.ndarray) -> np.ndarray:
    return np.zeros(len(origins))


def drift_forecast(series: TickerSeries, origins: np.ndarray) -> np.ndarray:
    drift = float(np.mean(np.diff(training_log_close(series))))
    return np.full(len(origins), drift)


def ets_forecast(series: TickerSeries, origins: np.ndarray) -> np.ndarray:
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    options = {"error": "add", "trend": "add", "damped_trend": True}
    log_close = np.log(series.close)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = ETSModel(training_log_close(series), **options).fit(disp=False)
    # fittedvalues[i] is the forecast of row i from rows < i: the rows after t cannot change it
    one_step = np.asarray(ETSModel(log_close, **options).smooth(fitted.params).fittedvalues)
    return one_step[origins + 1] - log_close[origins]


FORECASTERS = {"naive": naive_forecast, "drift": drift_forecast, "ets": ets_forecast}


def baseline_forecasts(series: list[TickerSeries], split: str = "test") -> dict[str, np.ndarray]:
    """Each baseline's predicted log returns at every ticker's `split` origins, tickers in `series` order."""
    return {
        name: np.concatenate([forecast(s, s.origins[split]) for s in series]) for name, forecast in FORECASTERS.items()
    }


def ticker_mean_mase(
    close_now: np.ndarray, close_next: np.ndarray, predicted: np.ndarray, tickers: np.ndarray
) -> float:
    """The mean over tickers of each ticker's MASE."""
    scaled, _ = scaled_errors(close_now, close_next, predicted, tickers)
    return float(pd.Series(scaled).groupby(np.asarray(tickers)).mean().mean())


def one_sided_dm_p_value(model_loss: np.ndarray, other_loss: np.ndarray, days: np.ndarray) -> float:
    """p-value of "the model's loss is lower" (Diebold–Mariano HLN, one-sided)."""
    return diebold_mariano(daily_loss_differential(days, model_loss, other_loss).to_numpy(), alternative="less").p_value


def baseline_metrics(
    close_now: np.ndarray,
    close_next: np.ndarray,
    days: np.ndarray,
    tickers: np.ndarray,
    predicted: np.ndarray,
    baselines: dict[str, np.ndarray],
    prefix: str = "test",
) -> dict[str, float]:
    """The model's ticker-mean MASE, each baseline's MAE/RMSE/MAPE/MASE (pooled and ticker mean) on the
    same rows, and the one-sided Diebold–Mariano p-values of the model against naive and drift."""
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1)
    metrics = {f"{prefix}_mase_ticker_mean": ticker_mean_mase(close_now, close_next, predicted, tickers)}
    model_loss, _ = scaled_errors(close_now, close_next, predicted, tickers)
    for name, forecast in baselines.items():
        if len(forecast) != len(predicted):
            raise ValueError(f"baseline {name}: {len(forecast)} forecasts for {len(predicted)} {prefix} rows")
        scores = forecast_metrics(close_now, close_next, forecast, prefix, tickers)
        for metric in ("mae", "rmse", "mape", "mase"):
            metrics[f"baseline_{name}_{prefix}_{metric}"] = scores[f"{prefix}_{metric}"]
        metrics[f"baseline_{name}_{prefix}_mase_ticker_mean"] = ticker_mean_mase(
            close_now, close_next, forecast, tickers
        )
        if name in DM_AGAINST:
            baseline_loss, _ = scaled_errors(close_now, close_next, forecast, tickers)
            metrics[f"dm_pvalue_vs_{name}"] = one_sided_dm_p_value(model_loss, baseline_loss, days)
    return metrics

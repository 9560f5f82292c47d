"""The stock baselines on hand-made series: each forecasts log returns at the test origins from the training
part (parameters) and the past (state) only, and the metrics compare the model with them on the same rows."""

import numpy as np
import pytest

from mlops_onnx.baselines import (
    baseline_forecasts,
    baseline_metrics,
    drift_forecast,
    ets_forecast,
    one_sided_dm_p_value,
)
from mlops_onnx.timeseries import FEATURES, TickerSeries, forecast_metrics

ROWS = 200


def series_of(close: np.ndarray, ticker: str = "aaa", test_days: int = 49) -> TickerSeries:
    """Training origins 30..119 (targets up to row 120), validation 120..149, test from 150."""
    return TickerSeries(
        ticker=ticker,
        dates=np.datetime64("2017-01-02", "ns") + np.arange(len(close)).astype("timedelta64[D]"),
        close=np.asarray(close, dtype=np.float64),
        features=np.zeros((len(close), len(FEATURES)), np.float32),
        origins={
            "train": np.arange(30, 120),
            "val": np.arange(120, 150),
            "test": np.arange(150, 150 + test_days),
        },
    )


def random_walk(seed: int, drift: float = 0.0, rows: int = ROWS) -> np.ndarray:
    steps = np.random.default_rng(seed).normal(drift, 0.02, rows - 1)
    return 50.0 * np.exp(np.concatenate([[0.0], np.cumsum(steps)]))


def test_drift_is_the_mean_training_log_return_and_ignores_later_days():
    close = random_walk(1)
    series = series_of(close)
    expected = np.log(close[120] / close[0]) / 120  # the closes up to the last training target day, row 120
    np.testing.assert_allclose(drift_forecast(series, series.origins["test"]), expected, rtol=1e-12)
    shifted = close.copy()
    shifted[121:] *= np.exp(0.3 * np.arange(1, ROWS - 120))  # a boom after training changes nothing
    assert drift_forecast(series_of(shifted), series.origins["test"])[0] == pytest.approx(expected, rel=1e-12)


def test_ets_forecasts_each_test_day_from_the_past_only():
    close = random_walk(2, drift=0.001)
    series = series_of(close)
    forecast = ets_forecast(series, series.origins["test"])
    later = close.copy()
    later[170:] *= 1.5  # a jump on day 170: the forecasts made at origins up to 169 (of day 170) cannot see it
    moved = ets_forecast(series_of(later), series.origins["test"])
    np.testing.assert_allclose(moved[: 170 - 150], forecast[: 170 - 150], rtol=0, atol=1e-12)
    assert np.abs(moved[170 - 150 :] - forecast[170 - 150 :]).max() > 1e-4  # ... and later ones do


def test_ets_parameters_come_from_the_training_part_only():
    close = random_walk(3)
    series = series_of(close)
    test = series.origins["test"]
    first = ets_forecast(series, test[:1])
    wild = close.copy()
    wild[152:] = close[152:] * np.exp(np.random.default_rng(9).normal(0, 0.3, ROWS - 152))  # test days only
    assert ets_forecast(series_of(wild), test[:1]) == pytest.approx(first, rel=1e-12)


def test_ets_follows_a_steady_trend_that_the_naive_forecast_lags():
    close = 20.0 * np.exp(0.004 * np.arange(ROWS))  # +0.4 % a day, every day
    series = series_of(close)
    forecast = ets_forecast(series, series.origins["test"])
    np.testing.assert_allclose(forecast, 0.004, atol=2e-4)


def test_baselines_cover_every_ticker_in_order_and_naive_scores_one():
    series = [series_of(random_walk(4), "aaa"), series_of(random_walk(5, 0.002), "bbb", test_days=20)]
    forecasts = baseline_forecasts(series)
    assert set(forecasts) == {"naive", "drift", "ets"}
    assert all(len(f) == 49 + 20 for f in forecasts.values())
    np.testing.assert_array_equal(forecasts["naive"], 0.0)
    np.testing.assert_allclose(forecasts["drift"][49:], drift_forecast(series[1], series[1].origins["test"]))

    close_now = np.concatenate([s.close[s.origins["test"]] for s in series])
    close_next = np.concatenate([s.close[s.origins["test"] + 1] for s in series])
    days = np.concatenate([s.dates[s.origins["test"] + 1] for s in series])
    tickers = np.repeat(["aaa", "bbb"], [49, 20])
    perfect = np.log(close_next / close_now)
    metrics = baseline_metrics(close_now, close_next, days, tickers, perfect, forecasts)
    for name in ("naive", "drift", "ets"):
        for metric in ("mae", "rmse", "mape", "mase", "mase_ticker_mean"):
            assert np.isfinite(metrics[f"baseline_{name}_test_{metric}"]), (name, metric)
    assert metrics["baseline_naive_test_mase"] == pytest.approx(1.0)
    assert metrics["baseline_naive_test_mase_ticker_mean"] == pytest.approx(1.0)
    assert metrics["test_mase_ticker_mean"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["dm_pvalue_vs_naive"] < 1e-6 and metrics["dm_pvalue_vs_drift"] < 1e-6  # a perfect model wins

    # Pooled MASE weighs tickers by their days, the ticker mean weighs them equally: half-right on bbb only.
    half = np.where(tickers == "bbb", 0.5 * perfect, 0.0)
    ticker_mean = baseline_metrics(close_now, close_next, days, tickers, half, {})["test_mase_ticker_mean"]
    pooled = forecast_metrics(close_now, close_next, half, "test", tickers)["test_mase"]
    assert ticker_mean == pytest.approx((1.0 + 0.5) / 2, abs=0.02)
    assert pooled == pytest.approx((49 * 1.0 + 20 * 0.5) / 69, abs=0.02)
    with pytest.raises(ValueError, match="baseline naive: 69 forecasts for 10 test rows"):
        baseline_metrics(close_now[:10], close_next[:10], days[:10], tickers[:10], perfect[:10], forecasts)


def test_one_sided_dm_p_value_says_which_model_is_better():
    rng = np.random.default_rng(6)
    days = np.repeat(np.arange(60), 3)
    baseline = rng.uniform(0.5, 1.5, len(days))
    better, worse = 0.8 * baseline, 1.2 * baseline
    assert one_sided_dm_p_value(better, baseline, days) < 0.01
    assert one_sided_dm_p_value(worse, baseline, days) > 0.99
    assert one_sided_dm_p_value(better, baseline, days) + one_sided_dm_p_value(baseline, better, days) == (
        pytest.approx(1.0)
    )
    assert one_sided_dm_p_value(baseline[:6], baseline[:6] * 0.5, days[:6]) == 1.0  # two days: no test

"""Stock features without look-ahead, splits by date with fixed boundaries, a scaler fitted on training rows only."""

import numpy as np
import pandas as pd
import pytest
from conftest import HAS_SHARED_DATA, SHARED_DATA

from mlops_onnx.sources.synthetic_stocks import random_walk, write_ticker
from mlops_onnx.timeseries import (
    FEATURES,
    WARMUP,
    FeatureScaler,
    load_series,
    make_features,
    next_day_log_return,
    read_ticker,
    split_origins,
    windows,
)

WINDOW, MAX_TRAIN = 10, 200
VAL_START, TEST_START = "2017-06-01", "2017-09-01"  # both the sample's tickers and the synthetic ones end 2017-11-10


@pytest.fixture
def ticker_file(tmp_path):
    """A real ticker from the sample when present (AAPL, CRLF), otherwise a synthetic one."""
    if HAS_SHARED_DATA:
        return SHARED_DATA / "price-volume-data-for-all-us-stocks-etfs" / "Stocks" / "aapl.us.txt"
    path = tmp_path / "Stocks" / "acme.us.txt"
    write_ticker(path, random_walk(np.random.default_rng(3), 1200))
    return path


def with_future_changed(frame: pd.DataFrame, after: int) -> pd.DataFrame:
    """The same history up to row `after`, a different future (prices doubled, volume tripled, highs moved)."""
    changed = frame.copy()
    changed.loc[after + 1 :, ["Open", "High", "Low", "Close"]] *= 2.0
    changed.loc[after + 1 :, "High"] *= 1.05
    changed.loc[after + 1 :, "Volume"] *= 3
    return changed


def test_changing_future_rows_leaves_past_features_unchanged(ticker_file):
    frame = read_ticker(ticker_file)
    cut = len(frame) - 100
    before = make_features(frame)
    after = make_features(with_future_changed(frame, cut))
    pd.testing.assert_frame_equal(before.iloc[: cut + 1], after.iloc[: cut + 1])
    assert not before.iloc[cut + 1 :].equals(after.iloc[cut + 1 :])  # the change is real and visible later


def test_every_feature_is_defined_after_the_warmup_and_only_then(ticker_file):
    features = make_features(read_ticker(ticker_file))
    assert list(features.columns) == list(FEATURES)
    assert features.iloc[:WARMUP].isna().any(axis=1).all()
    assert np.isfinite(features.iloc[WARMUP:].to_numpy()).all()


def test_target_is_the_next_days_log_return():
    close = np.array([10.0, 11.0, 9.9, 9.9])
    np.testing.assert_allclose(next_day_log_return(close)[:3], np.log([1.1, 0.9, 1.0]))
    assert np.isnan(next_day_log_return(close)[-1])


def test_a_window_reads_only_rows_up_to_its_origin():
    features = np.arange(50, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    out = windows(features, np.array([9, 30]), window=10)
    assert out.shape == (2, 10, 3)
    assert out[0, :, 0].tolist() == list(range(0, 10)) and out[1, -1, 0] == 30


def test_split_is_by_the_date_forecast(ticker_file):
    series = load_series(ticker_file, "t", WINDOW, VAL_START, TEST_START, MAX_TRAIN)
    forecast_day = {split: series.dates[origins + 1] for split, origins in series.origins.items()}
    assert len(forecast_day["train"]) == MAX_TRAIN
    assert forecast_day["train"].max() < np.datetime64(VAL_START) <= forecast_day["val"].min()
    assert forecast_day["val"].max() < np.datetime64(TEST_START) <= forecast_day["test"].min()
    # Test ends on the file's last day: its last target is the file's last close.
    frame = read_ticker(ticker_file)
    assert forecast_day["test"][-1] == frame["Date"].iloc[-1]
    np.testing.assert_allclose(series.targets("test")[-1], np.log(frame["Close"].iloc[-1] / frame["Close"].iloc[-2]))
    capped = load_series(ticker_file, "t", WINDOW, VAL_START, TEST_START, MAX_TRAIN, max_test=5)
    assert list(capped.dates[capped.origins["test"] + 1]) == list(forecast_day["test"][:5])  # the first test days


def test_rows_added_later_are_test_rows_and_no_test_row_moves_into_training(ticker_file, tmp_path):
    frame = read_ticker(ticker_file)
    dates = frame["Date"].to_numpy()
    earlier = split_origins(dates[:-30], WINDOW, VAL_START, TEST_START)  # the same archive, 30 days shorter
    later = split_origins(dates, WINDOW, VAL_START, TEST_START)
    day = {
        name: {split: set(dates[o + 1]) for split, o in origins.items()}
        for name, origins in (("earlier", earlier), ("later", later))
    }
    assert day["earlier"]["test"] < day["later"]["test"]  # every earlier test day is still a test day
    assert not day["earlier"]["test"] & (day["later"]["train"] | day["later"]["val"])
    assert day["earlier"]["train"] == day["later"]["train"] and day["earlier"]["val"] == day["later"]["val"]


def test_a_ticker_that_does_not_cover_the_splits_says_why(tmp_path):
    path = tmp_path / "Stocks" / "late.us.txt"
    write_ticker(path, random_walk(np.random.default_rng(0), 120))  # listed in 2017: no years of training
    with pytest.raises(ValueError, match=r"late.us.txt: .* gives \d+ training window\(s\) \(at least 100 needed\)"):
        load_series(path, "late", WINDOW, VAL_START, TEST_START, MAX_TRAIN, min_train=100)
    with pytest.raises(ValueError, match="must be before"):
        split_origins(read_ticker(path)["Date"].to_numpy(), WINDOW, TEST_START, VAL_START)


def test_scaler_is_fitted_on_training_rows_only(ticker_file, tmp_path):
    """Doubling every price after the training period changes validation/test features but not the scaler."""
    series = load_series(ticker_file, "t", WINDOW, VAL_START, TEST_START, MAX_TRAIN)
    frame = read_ticker(ticker_file)
    last_train_row = len(frame) - 1 - (len(series.features) - 1 - series.origins["train"][-1])
    changed = with_future_changed(frame, last_train_row)
    changed_path = tmp_path / "changed.us.txt"
    changed.assign(Date=changed["Date"].dt.strftime("%Y-%m-%d"), OpenInt=0).to_csv(changed_path, index=False)
    changed_series = load_series(changed_path, "t", WINDOW, VAL_START, TEST_START, MAX_TRAIN)

    np.testing.assert_array_equal(series.train_rows(WINDOW), changed_series.train_rows(WINDOW))
    assert not np.array_equal(series.features[series.origins["test"]], changed_series.features[series.origins["test"]])
    original = FeatureScaler.fit([series.train_rows(WINDOW)], clip=8.0)
    refit = FeatureScaler.fit([changed_series.train_rows(WINDOW)], clip=8.0)
    np.testing.assert_array_equal(original.mean, refit.mean)
    np.testing.assert_array_equal(original.std, refit.std)
    train_rows = series.train_rows(WINDOW)
    assert len(train_rows) == MAX_TRAIN + WINDOW - 1
    np.testing.assert_allclose(original.mean, train_rows.astype(np.float64).mean(axis=0), rtol=1e-9)


def test_scaler_round_trips_through_json_and_clips(tmp_path):
    rng = np.random.default_rng(0)
    blocks = [rng.normal(3, 2, (500, len(FEATURES))), rng.normal(3, 2, (300, len(FEATURES)))]
    scaler = FeatureScaler.fit(blocks, clip=3.0)
    np.testing.assert_allclose(scaler.mean, np.concatenate(blocks).mean(axis=0))
    np.testing.assert_allclose(scaler.std, np.concatenate(blocks).std(axis=0))
    path = scaler.to_json(tmp_path / "scaler.json", window=5)
    loaded = FeatureScaler.from_json(path)
    x = rng.normal(3, 20, (4, len(FEATURES)))
    np.testing.assert_array_equal(loaded.transform(x), scaler.transform(x))
    assert np.abs(scaler.transform(x)).max() <= 3.0
    assert path.read_text().lstrip().startswith("{")  # JSON, not a pickle

"""The stock baselines as candidates (`models.stock_baselines`): each ONNX graph, run by ONNX Runtime, is its numpy
formula, and where a baseline means what `baselines.py` means (naive: exactly 0; drift: the mean daily log return
of the closes it looks at) it gives the same number."""

import json
from dataclasses import replace

import numpy as np
import onnx
import pandas as pd
import pytest

from mlops_onnx.baselines import drift_forecast, naive_forecast
from mlops_onnx.models import ONNX_OPSET
from mlops_onnx.models.stock_baselines import ALPHAS, DRIFT, ETS, NAIVE, RET_1, ses_weights
from mlops_onnx.models.stock_splits import split_data, training_windows
from mlops_onnx.models.stocks import QUICK
from mlops_onnx.models.stocks import SPEC as LSTM
from mlops_onnx.runtime import make_session, run_batched
from mlops_onnx.timeseries import FEATURES, FeatureScaler, TickerSeries, make_features, split_origins
from mlops_onnx.variants import onnx_parameters

WINDOW = 20
CFG = replace(QUICK, window=WINDOW, val_start="2016-02-01", test_start="2016-04-01")
BASELINES = (NAIVE, DRIFT, ETS)


def ticker(returns: np.ndarray, name: str = "aaa") -> TickerSeries:
    """A ticker whose daily log returns are `returns`, from 2015-01-01 on business days (about 1.5 years for 400)."""
    close = 40.0 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    dates = pd.bdate_range("2015-01-01", periods=len(close))
    frame = pd.DataFrame(
        {"Date": dates, "Open": close, "High": close * 1.01, "Low": close * 0.99, "Close": close, "Volume": 1000.0}
    )
    origins = split_origins(dates.to_numpy(), WINDOW, CFG.val_start, CFG.test_start)
    features = make_features(frame).to_numpy(dtype=np.float32)
    return TickerSeries(name, dates.to_numpy(), close, features, origins)


def ar1(phi: float, rows: int = 400, seed: int = 0, scale: float = 0.01) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, scale, rows)
    returns = np.zeros(rows)
    for t in range(1, rows):
        returns[t] = phi * returns[t - 1] + noise[t]
    return returns


def fit(spec, series: list[TickerSeries], folder):
    """The baseline fitted as `StockSpec.train` fits it, and exported: (fitted, checkpoint, ONNX file, scaler, val)."""
    scaler = FeatureScaler.fit([s.train_rows(WINDOW) for s in series], CFG.feature_clip)
    training = training_windows(series, scaler, WINDOW, CFG.batch_size, CFG.seed)
    val = split_data(series, scaler, WINDOW, "val")
    checkpoint = folder / spec.architecture / spec.checkpoint_name
    checkpoint.parent.mkdir(parents=True)
    fitted = spec.fit_models(CFG, training, val, 0.01, checkpoint, lambda epoch, metrics: None)
    onnx_path = checkpoint.with_name("model_fp32.onnx")
    spec.export_onnx(checkpoint, onnx_path)
    return fitted, checkpoint, onnx_path, scaler, val


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("baselines")
    series = [ticker(ar1(0.3, seed=1), "aaa"), ticker(ar1(-0.2, seed=2, scale=0.02), "bbb")]
    return {spec.architecture: fit(spec, series, folder) for spec in BASELINES}


@pytest.mark.parametrize("spec", BASELINES, ids=lambda s: s.architecture)
def test_each_onnx_graph_is_its_numpy_formula_on_the_lstms_interface(fitted, spec, settings_env):
    _, checkpoint, onnx_path, scaler, val = fitted[spec.architecture]
    rng = np.random.default_rng(3)
    clipped = np.clip(rng.normal(0, 4, (64, WINDOW, len(FEATURES))), -scaler.clip, scaler.clip).astype(np.float32)
    inputs = np.concatenate([val.inputs, clipped])
    session = make_session(onnx_path)
    (graph_input,), (graph_output,) = session.get_inputs(), session.get_outputs()
    assert (graph_input.name, graph_input.shape) == (LSTM.onnx_input_name, ["batch", WINDOW, len(FEATURES)])
    assert (graph_output.name, graph_output.shape) == ("log_return", ["batch", 1])
    assert session.get_providers() == ["CPUExecutionProvider"]
    model = onnx.load(str(onnx_path))
    assert [(o.domain, o.version) for o in model.opset_import] == [("", ONNX_OPSET)]
    onnx_out = run_batched(session, inputs)
    native = spec.native_predictors(checkpoint, settings_env())
    assert list(native) == ["native_eager"] and spec.native_predictors(checkpoint, settings_env(), "cuda") == {}
    native_out = native["native_eager"](inputs)
    assert onnx_out.shape == native_out.shape == (len(inputs), 1) and onnx_out.dtype == np.float32
    np.testing.assert_allclose(onnx_out, native_out, rtol=0, atol=1e-7)


def test_naive_is_exactly_zero_whatever_the_window_holds(fitted):
    _, _, onnx_path, _, val = fitted["naive"]
    odd = np.full((3, WINDOW, len(FEATURES)), np.nan, np.float32)
    odd[1], odd[2] = np.inf, -1e30
    out = run_batched(make_session(onnx_path), np.concatenate([val.inputs, odd]))
    assert np.array_equal(out, np.zeros((len(val.inputs) + 3, 1), np.float32))
    assert np.array_equal(out[: len(val.inputs), 0], naive_forecast(None, np.arange(len(val.inputs))))


def test_drift_is_the_mean_daily_log_return_of_the_closes_in_the_window(tmp_path):
    series = ticker(np.random.default_rng(4).normal(0.001, 0.01, 400))
    _, _, onnx_path, scaler, val = fit(DRIFT, [series], tmp_path)
    assert np.nanmax(np.abs(scaler.transform(series.features)[:, RET_1])) < scaler.clip  # nothing clipped here
    out = run_batched(make_session(onnx_path), val.inputs)[:, 0]
    log_close = np.log(series.close)
    for row, t in enumerate(series.origins["val"]):
        by_hand = np.mean(np.diff(log_close[t - WINDOW : t + 1]))  # the WINDOW daily returns ending on day t
        # baselines.py's drift over a series whose training part is this window: the same forecast
        window_only = TickerSeries(
            "aaa",
            series.dates[t - WINDOW : t + 1],
            series.close[t - WINDOW : t + 1],
            series.features[t - WINDOW : t + 1],
            {"train": np.array([WINDOW - 1])},
        )
        assert out[row] == pytest.approx(by_hand, abs=1e-7)
        assert out[row] == pytest.approx(drift_forecast(window_only, np.array([t]))[0], abs=1e-7)


def test_drift_counts_a_return_beyond_the_clip_at_the_clipped_value(tmp_path):
    returns = np.random.default_rng(5).normal(0.0, 0.01, 400)
    series = ticker(returns)
    t = series.origins["val"][5]
    returns[t - 1] = 0.9  # a split-like jump on day t (return of row t): far beyond 8 std
    series = ticker(returns)
    _, _, onnx_path, scaler, val = fit(DRIFT, [series], tmp_path)
    clipped = scaler.clip * scaler.std[RET_1] + scaler.mean[RET_1]
    out = run_batched(make_session(onnx_path), val.inputs[5:6])[0, 0]
    window = np.diff(np.log(series.close[t - WINDOW : t + 1]))
    assert window.max() == pytest.approx(0.9) and clipped < 0.9
    assert out == pytest.approx(np.mean(np.where(window == window.max(), clipped, window)), abs=1e-7)


def test_ses_weights_decay_by_alpha_and_sum_to_one():
    np.testing.assert_allclose(ses_weights(0.5, 3), np.array([0.125, 0.25, 0.5]) / 0.875)
    np.testing.assert_array_equal(ses_weights(1.0, 4), [0.0, 0.0, 0.0, 1.0])  # the last day's return alone
    for alpha in ALPHAS:
        assert ses_weights(alpha, WINDOW).sum() == pytest.approx(1.0)
        assert np.all(np.diff(ses_weights(alpha, WINDOW)) >= 0)  # recent days weigh more


@pytest.mark.parametrize(("phi", "expected"), [(0.9, 1.0), (0.0, 0.01)])
def test_ets_takes_the_alpha_with_the_least_squared_error_on_the_training_windows(tmp_path, phi, expected):
    series = ticker(ar1(phi, rows=600, seed=6))
    fitted_ets, checkpoint, _, _, _ = fit(ETS, [series], tmp_path)
    model = json.loads(checkpoint.read_text())
    train = series.origins["train"]
    returns = np.diff(np.log(series.close))  # returns[i - 1] is day i's
    windows = np.stack([returns[t - WINDOW : t] for t in train])
    targets = np.log(series.close[train + 1] / series.close[train])
    errors = [np.mean((windows @ ses_weights(a, WINDOW) - targets) ** 2) for a in ALPHAS]
    assert model["alpha"] == ALPHAS[int(np.argmin(errors))] == expected
    assert fitted_ets.metrics["alpha"] == expected
    np.testing.assert_allclose(model["weights"], ses_weights(expected, WINDOW))


def test_the_baselines_are_simplest_to_most_complex_naive_drift_ets(fitted):
    parameters = {a: onnx_parameters(f[2]) for a, f in fitted.items()}
    assert parameters == {"naive": 1, "drift": 4, "ets": WINDOW + 2}
    ops = {a: {n.op_type for n in onnx.load(str(f[2])).graph.node} for a, f in fitted.items()}
    assert ops == {
        "naive": {"Shape", "Concat", "ConstantOfShape"},
        "drift": {"Gather", "ReduceMean", "Mul", "Add"},
        "ets": {"Gather", "MatMul", "Add"},
    }

"""The stock LSTM: quick real Keras training, tf2onnx export to a fused ONNX LSTM, fp32 parity in
ONNX Runtime, the int8/fp16 variants, and the naive-forecast metrics it is judged against."""

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
from conftest import stock_sample_snapshot

from mlops_onnx.models import ONNX_OPSET
from mlops_onnx.models.stocks import PREPROCESSING_FILE, QUICK, SPEC, TICKERS_FILE, load_tickers
from mlops_onnx.runtime import make_session, run_batched
from mlops_onnx.settings import get_settings
from mlops_onnx.timeseries import FEATURES, FeatureScaler, forecast_metrics
from mlops_onnx.variants import build_variants, graph_op_types


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Validate and train the quick profile on the real sample (or a synthetic archive), like the DAG does."""
    folder = tmp_path_factory.mktemp("stock-model")
    settings = replace(
        get_settings(), profile="quick", synthetic_size="small", home=folder / "home", stock_tickers=None
    )
    snapshot = stock_sample_snapshot(folder, settings)
    workdir = folder / "work"
    (workdir / "reports").mkdir(parents=True)
    report = SPEC.validate(snapshot, settings)
    assert report.success, report.message()
    (workdir / "reports" / "validation.json").write_text(json.dumps(report.to_dict()))
    epochs = []
    result = SPEC.train(snapshot, workdir, settings, lambda epoch, metrics: epochs.append((epoch, metrics)))
    onnx_path = workdir / "model_fp32.onnx"
    SPEC.export_onnx(result.checkpoint, onnx_path)
    return {
        "settings": settings,
        "snapshot": snapshot,
        "workdir": workdir,
        "result": result,
        "epochs": epochs,
        "onnx": onnx_path,
        "report": report,
    }


def test_training_logs_epochs_and_saves_a_keras_checkpoint(trained):
    result = trained["result"]
    assert result.checkpoint.name == "model.keras" and result.checkpoint.stat().st_size > 0
    assert [e for e, _ in trained["epochs"]] == list(range(1, len(trained["epochs"]) + 1))
    assert 1 <= len(trained["epochs"]) <= QUICK.epochs
    assert {"train_loss", "val_loss"} <= set(trained["epochs"][0][1])
    assert result.params["recurrent_layer"] == "keras.layers.LSTM"


def test_metrics_compare_the_model_with_the_naive_forecast(trained):
    metrics = trained["result"].metrics
    for name in (
        "test_mae",
        "test_rmse",
        "test_mape",
        "test_directional_accuracy",
        "test_mase",
        "naive_test_mae",
        "naive_test_rmse",
        "naive_test_mape",
        "val_mase",
        "val_mae",
    ):
        assert np.isfinite(metrics[name]), name
    # Starting from the naive forecast (zero head) and stopping early, the model cannot be far off it.
    assert 0.8 < metrics["val_mase"] < 1.2 and 0.8 < metrics["test_mase"] < 1.2
    assert 0 <= metrics["dm_pvalue_vs_naive"] <= 1


def test_tickers_come_from_passing_files_longest_history_first(trained):
    used = json.loads((trained["workdir"] / TICKERS_FILE).read_text())
    report = trained["report"]
    assert set(used["files"]) <= set(report.passing_files())
    assert len(used["files"]) == min(QUICK.max_tickers, len(report.passing_files()) - len(used["left_out"]))
    rows = [report.files[f].rows for f in used["files"]]
    assert rows == sorted(rows, reverse=True)
    for file, why in used["left_out"].items():  # passing files whose dates do not cover the splits
        assert file in report.passing_files() and "training window(s)" in why


def test_the_saved_scaler_is_json_fitted_on_training_rows(trained):
    path = trained["workdir"] / PREPROCESSING_FILE
    assert trained["result"].preprocessing == [path]
    payload = json.loads(path.read_text())
    assert payload["features"] == list(FEATURES) and payload["window"] == QUICK.window
    series = load_tickers(
        trained["snapshot"],
        json.loads((trained["workdir"] / TICKERS_FILE).read_text())["files"],
        SPEC.train_config(trained["settings"]),
    )
    refit = FeatureScaler.fit([s.train_rows(QUICK.window) for s in series], QUICK.feature_clip)
    np.testing.assert_allclose(payload["mean"], refit.mean, rtol=1e-12)
    np.testing.assert_allclose(payload["std"], refit.std, rtol=1e-12)


def test_export_is_a_fused_lstm_with_a_dynamic_batch(trained):
    ops = graph_op_types(trained["onnx"])
    assert "LSTM" in ops and not ops & {"Loop", "Scan"}, sorted(ops)
    opsets = onnx.load(str(trained["onnx"])).opset_import
    assert max(o.version for o in opsets if o.domain in ("", "ai.onnx")) == ONNX_OPSET
    session = make_session(trained["onnx"])
    shape = session.get_inputs()[0].shape
    assert session.get_inputs()[0].name == "window" and not isinstance(shape[0], int)
    assert shape[1:] == [QUICK.window, len(FEATURES)]
    for batch in (1, 7):
        out = session.run(None, {"window": np.zeros((batch, QUICK.window, len(FEATURES)), np.float32)})[0]
        assert out.shape == (batch, 1)


def test_onnx_fp32_matches_both_keras_predictors_on_the_test_windows(trained):
    settings = trained["settings"]
    rows = SPEC.evaluation_data(trained["snapshot"], settings, trained["workdir"])
    inputs, targets = rows.inputs, rows.targets
    assert inputs.dtype == np.float32 and inputs.shape[1:] == (QUICK.window, len(FEATURES))
    assert len(inputs) == len(targets) == trained["result"].metrics["test_windows"]
    onnx_out = run_batched(make_session(trained["onnx"]), inputs)
    natives = SPEC.native_predictors(trained["result"].checkpoint, settings)
    assert set(natives) == {"native_eager", "native_predict"}
    for predict in natives.values():
        assert np.abs(predict(inputs) - onnx_out).max() <= SPEC.parity_rules.fp32_max_abs_diff
    assert SPEC.native_predictors(trained["result"].checkpoint, settings, device="cuda") == {}
    # The test windows are rebuilt exactly: the model's MAE on them is the logged test MAE in return units.
    assert SPEC.quality(onnx_out, targets) == pytest.approx(float(np.mean(np.abs(onnx_out[:, 0] - targets))))
    again = SPEC.evaluation_data(trained["snapshot"], settings, trained["workdir"])
    np.testing.assert_array_equal(again.inputs, inputs)
    np.testing.assert_array_equal(again.targets, targets)
    assert len(set(rows.ids)) == len(rows.ids) and rows.ids[0].count(":") == 1  # ticker:day of the forecast


def test_int8_dynamic_and_fp16_variants_build_and_stay_within_two_percent(trained, tmp_path):
    from mlops_onnx.parity import compare

    variants = build_variants(SPEC.variants, trained["onnx"], tmp_path, None)
    assert {name: v["status"] for name, v in variants.items()} == {"int8_dynamic": "built", "fp16": "built"}
    assert "DynamicQuantizeLSTM" in graph_op_types(variants["int8_dynamic"]["path"])
    rows = SPEC.evaluation_data(trained["snapshot"], trained["settings"], trained["workdir"])
    inputs, targets = rows.inputs, rows.targets
    native = SPEC.native_predictors(trained["result"].checkpoint, trained["settings"])["native_eager"](inputs)
    for name, info in variants.items():
        out = run_batched(make_session(info["path"]), inputs)
        result = compare(
            name, native, out, None, None, SPEC.quality(native, targets), SPEC.quality(out, targets), SPEC.parity_rules
        )
        assert result.passed, (name, result.reasons)


def test_naive_baseline_metrics_on_a_toy_series():
    close_now = np.array([100.0, 110.0, 99.0, 99.0])
    close_next = np.array([110.0, 99.0, 99.0, 108.9])
    naive = forecast_metrics(close_now, close_next, np.zeros(4), "test")
    assert naive["naive_test_mae"] == pytest.approx((10 + 11 + 0 + 9.9) / 4)
    assert naive["naive_test_rmse"] == pytest.approx(np.sqrt((100 + 121 + 0 + 98.01) / 4))
    assert naive["naive_test_mape"] == pytest.approx(100 * (10 / 110 + 11 / 99 + 0 + 9.9 / 108.9) / 4)
    assert naive["test_mae"] == naive["naive_test_mae"] and naive["test_mase"] == pytest.approx(1.0)

    perfect = forecast_metrics(close_now, close_next, np.log(close_next / close_now), "test")
    assert perfect["test_mae"] == pytest.approx(0, abs=1e-9) and perfect["test_mase"] == pytest.approx(0, abs=1e-9)
    assert perfect["test_directional_accuracy"] == 1.0  # over the 3 days that moved
    half = forecast_metrics(close_now, close_next, 0.5 * np.log(close_next / close_now), "val")
    assert half["val_mase"] == pytest.approx(half["val_mae"] / half["naive_val_mae"])
    assert 0.45 < half["val_mase"] < 0.55
    wrong_way = forecast_metrics(close_now, close_next, -0.01 * np.sign(close_next - close_now), "test")
    assert wrong_way["test_directional_accuracy"] == 0.0 and wrong_way["test_mase"] > 1.0


def test_the_champion_is_fed_its_own_window_and_scaler_on_the_same_days(trained, tmp_path):
    """Head to head with a champion of another window length: the same forecast days, each model's own inputs."""
    payload = json.loads((trained["workdir"] / PREPROCESSING_FILE).read_text())
    champion = tmp_path / "champion"
    champion.mkdir()
    (champion / PREPROCESSING_FILE).write_text(json.dumps({**payload, "window": QUICK.window - 5}))
    ours = SPEC.evaluation_data(trained["snapshot"], trained["settings"], trained["workdir"])
    theirs = SPEC.evaluation_data(trained["snapshot"], trained["settings"], trained["workdir"], champion)
    assert list(theirs.ids) == list(ours.ids) and theirs.inputs.shape[1] == QUICK.window - 5
    np.testing.assert_array_equal(theirs.inputs[:, -1], ours.inputs[:, -1])  # the same last day, the same scaling
    np.testing.assert_array_equal(theirs.targets, ours.targets)
    # A candidate that forecasts every return exactly beats the naive-like champion, by Diebold-Mariano.
    result = SPEC.head_to_head(ours.targets[:, None], np.zeros((len(ours.targets), 1)), ours)
    assert result.metric == "test_mase_daily_mean" and result.candidate == pytest.approx(0, abs=1e-6)
    assert result.champion == pytest.approx(1.0) and result.candidate_is_better and result.test.p_value < 1e-6
    assert result.test.n == len(set(ours.extra["day"]))  # one loss differential per day, tickers pooled


def test_an_epoch_samples_a_bounded_number_of_windows_fresh_each_time(trained):
    """`windows_per_epoch`: an epoch is a seeded sample of that many training windows, another each epoch,
    so its cost does not grow with the histories; without it, every window once."""
    from mlops_onnx.models.stock_splits import window_batches

    settings, snapshot, workdir = trained["settings"], trained["snapshot"], trained["workdir"]
    cfg = SPEC.train_config(settings)
    series = load_tickers(snapshot, json.loads((workdir / TICKERS_FILE).read_text())["files"], cfg)
    scaler = FeatureScaler.from_json(workdir / PREPROCESSING_FILE)
    every = window_batches(series, scaler, cfg.window, 32, cfg.seed)
    assert len(every) == -(-len(every.origins) // 32) and sorted(every.order) == list(range(len(every.origins)))
    sampled = window_batches(series, scaler, cfg.window, 32, cfg.seed, per_epoch=100)
    first = sampled.order.copy()
    assert len(sampled) == 4 and len(first) == 100 == len(set(first.tolist()))
    inputs, targets = sampled[3]
    assert inputs.shape == (4, cfg.window, len(FEATURES)) and targets.shape == (4, 1)
    sampled.on_epoch_end()
    assert len(sampled.order) == 100 and set(sampled.order.tolist()) != set(first.tolist())
    again = window_batches(series, scaler, cfg.window, 32, cfg.seed, per_epoch=100)
    assert again.order.tolist() == first.tolist()  # seeded

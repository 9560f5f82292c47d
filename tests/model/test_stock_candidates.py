"""The stock candidates side by side on the real sample (quick profile): the LSTM, the transformer and the
ensemble of the two trained the same way, the statistical baselines scored on their test rows, the
transformer's export and parity, the two fp32 graphs averaged into one ONNX ensemble, and the ensemble
candidate's members, metrics, one-graph export and parity against the mean of its Keras members."""

import json
import re
import time
from dataclasses import replace

import numpy as np
import pytest
from conftest import stock_sample_snapshot

from mlops_onnx.baselines import BASELINES, baseline_forecasts, baseline_metrics
from mlops_onnx.models import stocks_ensemble, stocks_transformer
from mlops_onnx.models.stocks import PREPROCESSING_FILE, QUICK, SPEC, TICKERS_FILE, load_tickers
from mlops_onnx.onnx_ensemble import mean_ensemble
from mlops_onnx.runtime import make_session, run_batched
from mlops_onnx.settings import get_settings
from mlops_onnx.timeseries import FEATURES, forecast_metrics
from mlops_onnx.variants import graph_op_types

TRANSFORMER = stocks_transformer.SPEC
ENSEMBLE = stocks_ensemble.SPEC
# The ensemble's members against the lone candidates: same start, same batches, same seed. On the sample they
# come out bit for bit equal; the tolerance leaves room for threaded float math on another machine only.
MEMBER_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    """Validate once, then train and export the LSTM, the transformer and the ensemble on the same snapshot, each
    in a folder of its own, like the DAG's candidates; the ensemble in another DAG run's folder, so it fits its
    own members instead of copying the candidates' (`stock_members`)."""
    folder = tmp_path_factory.mktemp("stock-candidates")
    settings = replace(
        get_settings(), profile="quick", synthetic_size="small", home=folder / "home", stock_tickers=None
    )
    snapshot = stock_sample_snapshot(folder, settings)
    report = SPEC.validate(snapshot, settings)
    assert report.success, report.message()
    trained = {"settings": settings, "snapshot": snapshot, "report": report}
    for spec in (SPEC, TRANSFORMER, ENSEMBLE):
        workdir = folder / ("other-night" if spec is ENSEMBLE else "night") / spec.architecture
        (workdir / "reports").mkdir(parents=True)
        (workdir / "reports" / "validation.json").write_text(json.dumps(report.to_dict()))
        epochs = []
        started = time.perf_counter()
        result = spec.train(snapshot, workdir, settings, lambda epoch, metrics: epochs.append((epoch, metrics)))
        seconds = time.perf_counter() - started
        onnx_path = workdir / "model_fp32.onnx"
        spec.export_onnx(result.checkpoint, onnx_path)
        rows = spec.evaluation_data(snapshot, settings, workdir)
        trained[spec.architecture] = {
            "workdir": workdir,
            "result": result,
            "onnx": onnx_path,
            "rows": rows,
            "epochs": epochs,
            "train_seconds": seconds,
        }
    return trained


def test_both_candidates_share_the_name_features_scaler_and_test_rows(candidates):
    lstm, transformer = candidates["lstm"], candidates["transformer"]
    assert TRANSFORMER.name == SPEC.name and (SPEC.architecture, TRANSFORMER.architecture) == ("lstm", "transformer")
    assert transformer["result"].params["architecture"] == "transformer"
    assert "recurrent_layer" not in transformer["result"].params
    assert lstm["result"].params["recurrent_layer"] == "keras.layers.LSTM"
    scalers = [json.loads((c["workdir"] / PREPROCESSING_FILE).read_text()) for c in (lstm, transformer)]
    assert scalers[0] == scalers[1]
    assert list(transformer["rows"].ids) == list(lstm["rows"].ids)
    np.testing.assert_array_equal(transformer["rows"].inputs, lstm["rows"].inputs)
    # Starting from the naive forecast (zero head) and stopping early, neither can be far from it.
    for candidate in (lstm, transformer):
        assert 0.8 < candidate["result"].metrics["test_mase"] < 1.2


@pytest.mark.parametrize("architecture", ["lstm", "transformer", "ensemble"])
def test_baselines_are_logged_for_the_rows_evaluation_data_gives(candidates, architecture):
    """Recomputed from `evaluation_data` (the rows the gate and the head-to-head read), the baselines and the
    comparison metrics are the ones `train` logged: the same tickers, the same test days."""
    candidate = candidates[architecture]
    metrics, rows = candidate["result"].metrics, candidate["rows"]
    files = json.loads((candidate["workdir"] / TICKERS_FILE).read_text())["files"]
    series = load_tickers(candidates["snapshot"], files, SPEC.train_config(candidates["settings"]))
    assert list(np.unique(rows.extra["ticker"])) == sorted(s.ticker for s in series)
    predicted = run_batched(make_session(candidate["onnx"]), rows.inputs)
    x = rows.extra
    again = baseline_metrics(
        x["close_now"], x["close_next"], x["day"], x["ticker"], predicted, baseline_forecasts(series)
    )
    for name, value in again.items():
        assert metrics[name] == pytest.approx(value, rel=1e-5, abs=1e-9), name
    for name in BASELINES:
        for metric in ("mae", "rmse", "mape", "mase", "mase_ticker_mean"):
            assert np.isfinite(metrics[f"baseline_{name}_test_{metric}"]), (name, metric)
        # A price random walk is hard to beat: every baseline is within 10 % of naive's MASE of 1.
        assert 0.9 < metrics[f"baseline_{name}_test_mase"] < 1.1, name
    assert metrics["baseline_naive_test_mase"] == pytest.approx(1.0)
    assert metrics["baseline_naive_test_mae"] == pytest.approx(metrics["naive_test_mae"])
    assert 0 < metrics["dm_pvalue_vs_naive"] < 1 and 0 < metrics["dm_pvalue_vs_drift"] < 1
    assert np.isfinite(metrics["test_mase_ticker_mean"])
    assert metrics["baseline_seconds"] < 60  # fitted per ticker in seconds on the quick profile


def test_transformer_exports_the_onnx_ops_its_docstring_lists(candidates):
    listed = re.search(r"checks the list\): (.*?)\. The", stocks_transformer.__doc__, re.DOTALL).group(1)
    assert graph_op_types(candidates["transformer"]["onnx"]) == {op.strip() for op in listed.split(",")}


def test_transformer_onnx_matches_keras_on_the_test_windows(candidates):
    transformer = candidates["transformer"]
    session = make_session(transformer["onnx"])
    shape = session.get_inputs()[0].shape
    assert session.get_inputs()[0].name == "window" and not isinstance(shape[0], int)
    assert shape[1:] == [QUICK.window, len(FEATURES)]
    inputs = transformer["rows"].inputs
    onnx_out = run_batched(session, inputs)
    natives = TRANSFORMER.native_predictors(transformer["result"].checkpoint, candidates["settings"])
    assert set(natives) == {"native_eager", "native_predict"}
    for predict in natives.values():
        assert np.abs(predict(inputs) - onnx_out).max() <= 1e-4
    assert TRANSFORMER.quality(onnx_out, transformer["rows"].targets) > 0


def test_one_onnx_graph_averages_the_lstm_and_the_transformer(candidates, tmp_path):
    lstm, transformer = candidates["lstm"], candidates["transformer"]
    path = mean_ensemble([lstm["onnx"], transformer["onnx"]], tmp_path / "ensemble.onnx")
    session = make_session(path)
    assert [i.name for i in session.get_inputs()] == ["window"] and len(session.get_outputs()) == 1
    assert not isinstance(session.get_inputs()[0].shape[0], int)
    assert {"LSTM", "Conv", "Mean"} <= graph_op_types(path)
    inputs = lstm["rows"].inputs
    members = [run_batched(make_session(c["onnx"]), inputs) for c in (lstm, transformer)]
    assert np.abs(members[0] - members[1]).max() > 1e-5  # two different models: a mean of one would fail
    ensemble = run_batched(session, inputs)
    assert ensemble.shape == members[0].shape == (len(inputs), 1)
    assert np.abs(ensemble - (members[0] + members[1]) / 2).max() <= 1e-6
    keras = [
        spec.native_predictors(c["result"].checkpoint, candidates["settings"])["native_eager"](inputs)
        for spec, c in ((SPEC, lstm), (TRANSFORMER, transformer))
    ]
    assert np.abs(ensemble - (keras[0] + keras[1]) / 2).max() <= 1e-4
    for batch in (1, 7):
        assert session.run(None, {"window": inputs[:batch]})[0].shape == (batch, 1)


def test_the_ensemble_fits_its_own_lstm_and_transformer_like_the_lone_candidates(candidates):
    """Same data, scaler, batches and seed: each member is the candidate of its architecture, trained again."""
    ensemble = candidates["ensemble"]
    checkpoint = ensemble["result"].checkpoint
    assert checkpoint == ensemble["workdir"] / ENSEMBLE.checkpoint_name and checkpoint.is_dir()
    assert sorted(p.name for p in checkpoint.iterdir()) == ["lstm.keras", "transformer.keras"]
    scalers = [json.loads((candidates[a]["workdir"] / PREPROCESSING_FILE).read_text()) for a in ("lstm", "ensemble")]
    assert scalers[0] == scalers[1]
    assert list(ensemble["rows"].ids) == list(candidates["lstm"]["rows"].ids)
    inputs = ensemble["rows"].inputs
    settings = candidates["settings"]
    for spec in (SPEC, TRANSFORMER):
        member = spec.native_predictors(checkpoint / f"{spec.architecture}.keras", settings)["native_eager"]
        alone = spec.native_predictors(candidates[spec.architecture]["result"].checkpoint, settings)["native_eager"]
        assert np.abs(member(inputs) - alone(inputs)).max() <= MEMBER_TOLERANCE, spec.architecture
        lone_metrics = candidates[spec.architecture]["result"].metrics
        for name in ("epochs_run", "best_val_loss"):
            assert ensemble["result"].metrics[f"{spec.architecture}_{name}"] == pytest.approx(
                lone_metrics[name], rel=1e-3
            )
    epoch_metrics = {name for _, metrics in ensemble["epochs"] for name in metrics}
    assert {"lstm_train_loss", "lstm_val_loss", "transformer_train_loss", "transformer_val_loss"} <= epoch_metrics
    assert not epoch_metrics & {"train_loss", "val_loss"}
    params = ensemble["result"].params
    assert params["architecture"] == "ensemble" and params["members"] == "lstm,transformer"
    assert params["lstm_recurrent_layer"] == "keras.layers.LSTM" and params["transformer_attention_heads"] == 2
    assert params["parameters"] == params["lstm_parameters"] + params["transformer_parameters"]


def test_the_ensembles_metrics_are_those_of_the_mean_forecast(candidates):
    ensemble = candidates["ensemble"]
    rows, metrics = ensemble["rows"], ensemble["result"].metrics
    settings = candidates["settings"]
    checkpoint = ensemble["result"].checkpoint
    members = [
        spec.native_predictors(checkpoint / f"{spec.architecture}.keras", settings)["native_predict"](rows.inputs)
        for spec in (SPEC, TRANSFORMER)
    ]
    mean = (members[0] + members[1]) / 2
    x = rows.extra
    again = forecast_metrics(x["close_now"], x["close_next"], mean, "test", x["ticker"])
    for name, value in again.items():
        assert metrics[name] == pytest.approx(value, rel=1e-6), name
    assert metrics["best_val_loss"] < max(metrics["lstm_best_val_loss"], metrics["transformer_best_val_loss"])
    assert 0.8 < metrics["test_mase"] < 1.2


def test_the_ensemble_exports_one_graph_that_matches_the_mean_of_its_keras_members(candidates):
    ensemble = candidates["ensemble"]
    session = make_session(ensemble["onnx"])
    assert [i.name for i in session.get_inputs()] == ["window"] and len(session.get_outputs()) == 1
    assert session.get_inputs()[0].shape[1:] == [QUICK.window, len(FEATURES)]
    assert {"LSTM", "Conv", "Mean"} <= graph_op_types(ensemble["onnx"])
    inputs = ensemble["rows"].inputs
    onnx_out = run_batched(session, inputs)
    natives = ENSEMBLE.native_predictors(ensemble["result"].checkpoint, candidates["settings"], compiled=True)
    assert set(natives) == {"native_eager", "native_predict", "native_compiled"}
    for name, predict in natives.items():
        native = predict(inputs)
        assert native.shape == onnx_out.shape == (len(inputs), 1), name
        assert np.abs(native - onnx_out).max() <= ENSEMBLE.parity_rules.fp32_max_abs_diff, name
    assert ENSEMBLE.native_predictors(ensemble["result"].checkpoint, candidates["settings"], device="cuda") == {}


def copy_in(candidates, workdir, spec):
    """Train `spec` as a candidate in `workdir` (a folder of some night's run) and say which epochs it ran."""
    (workdir / "reports").mkdir(parents=True)
    (workdir / "reports" / "validation.json").write_text(json.dumps(candidates["report"].to_dict()))
    epochs = []
    result = spec.train(candidates["snapshot"], workdir, candidates["settings"], lambda e, m: epochs.append(m))
    return result, epochs


def test_a_member_fitted_by_a_candidate_of_the_same_night_is_copied_not_fitted_again(candidates):
    """The ensemble in the LSTM's and transformer's night copies their Keras files (no epoch runs) and forecasts
    what the ensemble that fitted its own members forecasts; the other way round, an LSTM candidate after the
    ensemble in its night copies the ensemble's member."""
    alone = candidates["ensemble"]["result"]
    assert alone.params["lstm_fitted_in"] == "ensemble/members/lstm.keras"  # fitted, not copied
    assert candidates["lstm"]["result"].params["fitted_in"] == "lstm/model.keras"

    night = candidates["lstm"]["workdir"].parent
    copied, epochs = copy_in(candidates, night / "ensemble", ENSEMBLE)
    assert epochs == []
    for spec in (SPEC, TRANSFORMER):
        arch = spec.architecture
        member = copied.checkpoint / f"{arch}.keras"
        assert member.read_bytes() == candidates[arch]["result"].checkpoint.read_bytes(), arch
        assert copied.params[f"{arch}_fitted_in"] == f"{arch}/model.keras"
        assert copied.metrics[f"{arch}_epochs_run"] == candidates[arch]["result"].metrics["epochs_run"]
    for name in ("test_mase", "val_mase", "test_mae", "baseline_naive_test_mase"):
        assert copied.metrics[name] == pytest.approx(alone.metrics[name], rel=1e-5), name

    other_night = candidates["ensemble"]["workdir"].parent
    lstm, epochs = copy_in(candidates, other_night / "lstm", SPEC)
    assert epochs == [] and lstm.params["fitted_in"] == "ensemble/members/lstm.keras"
    assert lstm.checkpoint.read_bytes() == (alone.checkpoint / "lstm.keras").read_bytes()
    assert lstm.metrics["test_mase"] == pytest.approx(candidates["lstm"]["result"].metrics["test_mase"], rel=1e-5)


def test_a_fit_under_another_config_is_not_copied(candidates, tmp_path):
    """The key is the config, target scale and validation rows: a night with another config fits its own."""
    night = candidates["lstm"]["workdir"].parent
    settings = replace(candidates["settings"], epochs=1)
    workdir = night / "lstm-one-epoch"
    (workdir / "reports").mkdir(parents=True)
    (workdir / "reports" / "validation.json").write_text(json.dumps(candidates["report"].to_dict()))
    epochs = []
    result = SPEC.train(candidates["snapshot"], workdir, settings, lambda e, m: epochs.append(m))
    assert len(epochs) == 1 and result.params["fitted_in"] == "lstm-one-epoch/model.keras"

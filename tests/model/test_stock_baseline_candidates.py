"""The stock baselines trained as candidates beside the LSTM on the sample (quick profile): the same validation and
test rows, row id for row id, so the night's choice compares them all on every validation row, and each one's
export matches its native formula on the test rows."""

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import stock_sample_snapshot

from mlops_onnx.decisions import choose
from mlops_onnx.models.stock_baselines import DRIFT, ETS, NAIVE
from mlops_onnx.models.stocks import PREPROCESSING_FILE, TICKERS_FILE
from mlops_onnx.models.stocks import SPEC as LSTM
from mlops_onnx.runtime import make_session, run_batched
from mlops_onnx.settings import get_settings
from mlops_onnx.variants import onnx_parameters

SPECS = (LSTM, NAIVE, DRIFT, ETS)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """The LSTM (one epoch: its rows, not its skill, are compared) and the three baselines, each in its own folder."""
    folder = tmp_path_factory.mktemp("stock-baselines")
    settings = replace(get_settings(), profile="quick", home=folder / "home", stock_tickers=None, epochs=1)
    snapshot = stock_sample_snapshot(folder, settings)
    report = LSTM.validate(snapshot, settings)
    assert report.success, report.message()
    trained = {}
    for spec in SPECS:
        workdir = folder / spec.architecture
        (workdir / "reports").mkdir(parents=True)
        (workdir / "reports" / "validation.json").write_text(json.dumps(report.to_dict()))
        result = spec.train(snapshot, workdir, settings, lambda epoch, metrics: None)
        onnx_path = workdir / "model_fp32.onnx"
        spec.export_onnx(result.checkpoint, onnx_path)
        rows = spec.evaluation_data(snapshot, settings, workdir)
        trained[spec.architecture] = {"workdir": workdir, "result": result, "onnx": onnx_path, "rows": rows}
    return settings, trained


def test_baselines_have_the_lstms_tickers_scaler_and_row_ids(night):
    _, trained = night
    lstm = trained["lstm"]
    for architecture in ("naive", "drift", "ets"):
        baseline = trained[architecture]
        for name in (PREPROCESSING_FILE, TICKERS_FILE):
            assert (baseline["workdir"] / name).read_text() == (lstm["workdir"] / name).read_text(), name
        assert list(baseline["rows"].ids) == list(lstm["rows"].ids) and len(lstm["rows"].ids)
        assert all(":" in i and len(i.split(":")[1]) == 10 for i in baseline["rows"].ids)  # ticker:YYYY-MM-DD
        np.testing.assert_array_equal(baseline["rows"].inputs, lstm["rows"].inputs)
        validation, lstm_validation = baseline["result"].validation, lstm["result"].validation
        assert list(validation.rows.ids) == list(lstm_validation.rows.ids) and len(validation.rows.ids)
        assert set(validation.rows.extra) == set(lstm["rows"].extra) == {"close_now", "close_next", "ticker", "day"}
        assert baseline["result"].metrics["val_windows"] == lstm["result"].metrics["val_windows"]


def test_each_baselines_export_is_its_native_formula_on_the_test_rows(night):
    settings, trained = night
    for spec in (NAIVE, DRIFT, ETS):
        baseline = trained[spec.architecture]
        inputs = baseline["rows"].inputs
        onnx_out = run_batched(make_session(baseline["onnx"]), inputs)
        native_out = spec.native_predictors(baseline["result"].checkpoint, settings)["native_eager"](inputs)
        np.testing.assert_allclose(onnx_out, native_out, rtol=0, atol=1e-7)
    metrics = trained["naive"]["result"].metrics
    assert metrics["test_mase"] == 1.0 and metrics["val_mase"] == 1.0  # exactly: it passes the gate (MASE ≤ 1)


def test_the_nights_choice_compares_every_candidate_on_every_validation_row(night):
    _, trained = night
    scored = {a: t["result"].validation for a, t in trained.items()}
    complexity = {a: onnx_parameters(t["onnx"]) for a, t in trained.items()}
    assert complexity["naive"] < complexity["drift"] < complexity["ets"] < complexity["lstm"]
    choice = choose(LSTM, scored, complexity, alpha=0.05)
    assert choice.rows == len(scored["lstm"].rows.ids)
    assert set(choice.reasons) == set(trained) and choice.chosen in trained

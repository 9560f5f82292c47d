"""Real torch.onnx exports and real ONNX Runtime sessions, checked by the parity stage."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import mlflow_client, perturbed_copy, run_stage

from mlops_onnx.models import ONNX_OPSET
from mlops_onnx.runtime import make_session
from mlops_onnx.stages import ParityError
from mlops_onnx.tracking import RunContext

MODEL = "fashion_mnist_classifier"


def test_export_has_named_io_and_a_dynamic_batch_axis(exported_cnn):
    _, path = exported_cnn
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == ONNX_OPSET  # as tf2onnx's
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    session = make_session(path)
    for batch in (1, 7):
        out = session.run(None, {"image": np.zeros((batch, 1, 28, 28), np.float32)})[0]
        assert out.shape == (batch, 10)
    assert session.get_providers() == ["CPUExecutionProvider"]


@pytest.fixture
def ingested(settings_env):
    settings_env(MLOPS_DATA_SOURCE="synthetic")

    def run(run_id: str):
        ctx = RunContext("test_parity", run_id)
        return ctx, run_stage("ingest", MODEL, ctx)

    return run


def test_parity_passes_the_real_export_on_a_capped_sample(ingested, exported_cnn, settings_env, tmp_path):
    checkpoint, path = exported_cnn
    ctx, state = ingested("good")
    settings_env(MLOPS_PARITY_MAX_ROWS="50")
    exported = {"checkpoint": str(checkpoint), "onnx_fp32": str(path), "variants": {}}
    result = run_stage("parity", MODEL, ctx, state | exported)
    assert result["parity"] == {"fp32": True}
    assert result["parity_fp32_max_abs_diff"] <= 1e-4
    # A second ONNX implementation, onnx's reference runtime, agrees with ONNX Runtime on a few test rows.
    from mlops_onnx.settings import get_settings

    client = mlflow_client(get_settings().home)
    run = client.get_run(state["mlflow_run_id"])
    assert run.data.tags["parity_fp32_reference"] == "ran" and run.data.metrics["parity_fp32_reference_rows"] == 8
    assert 0 <= run.data.metrics["parity_fp32_reference_max_abs_diff"] <= 1e-4
    # The test split is larger than the cap: parity compared the cap's worth of it, and says so.
    assert run.data.metrics["parity_rows"] == 50 < run.data.metrics["parity_test_rows"]
    report = json.loads(Path(client.download_artifacts(run.info.run_id, "reports/parity.json", tmp_path)).read_text())
    assert (report["rows"], report["test_rows"]) == (50, run.data.metrics["parity_test_rows"])


def test_a_changed_weight_fails_parity_and_is_recorded(ingested, exported_cnn, tmp_path):
    checkpoint, path = exported_cnn
    broken = perturbed_copy(path, tmp_path / "broken.onnx")
    ctx, state = ingested("broken")
    with pytest.raises(ParityError, match="max abs diff"):
        exported = {"checkpoint": str(checkpoint), "onnx_fp32": str(broken), "variants": {}}
        run_stage("parity", MODEL, ctx, state | exported)
    from mlops_onnx.settings import get_settings

    run = mlflow_client(get_settings().home).get_run(state["mlflow_run_id"])
    assert run.data.tags["parity_status"] == "failed"
    assert run.data.tags["gate_status"] == "rejected"
    assert run.data.metrics["parity_fp32_passed"] == 0.0


def _fp32(native, candidate, spec):
    from mlops_onnx.parity import compare

    return compare(
        "fp32",
        native,
        candidate,
        spec.labels(native),
        spec.labels(candidate),
        1.0,
        1.0,
        spec.parity_rules,
        spec.decision_margin(native),
    )


def test_a_label_flip_at_the_decision_boundary_is_rounding_not_a_parity_failure():
    """Constructed outputs: a probability within the fp32 tolerance of 0.5 (news) or two top logits within twice
    the tolerance (fashion: each may move by it) flips its label by rounding alone; it is counted, not failed."""
    from mlops_onnx.models.fake_news import SPEC as NEWS
    from mlops_onnx.models.fashion import SPEC as FASHION

    tol = NEWS.parity_rules.fp32_max_abs_diff
    native = np.array([[0.5 + tol / 3], [0.9], [0.1], [0.3]], np.float32)
    candidate = native.copy()
    candidate[0] = 0.5 - tol / 3  # 0.500033 -> 0.499967: "fake" -> "real", within tolerance
    result = _fp32(native, candidate, NEWS)
    assert result.passed and result.boundary_rows == 1 and result.agreement == 0.75

    logits = np.array([[2.0, 2.0 + tol, -1.0], [5.0, 0.0, 0.0], [0.0, 3.0, 1.0]], np.float32)
    flipped = logits.copy()
    flipped[0] = [2.0 + tol / 2, 2.0 + tol / 2 - 1e-6, -1.0]  # the two top logits swap order, each moved < tol
    result = _fp32(logits, flipped, FASHION)
    assert result.passed and result.boundary_rows == 1


def test_a_label_flip_away_from_the_boundary_still_fails_fp32_parity():
    from mlops_onnx.models.fake_news import SPEC as NEWS
    from mlops_onnx.models.fashion import SPEC as FASHION

    native = np.array([[0.5 + 0.01], [0.9]], np.float32)
    candidate = native.copy()
    candidate[0] = 0.5 - 1e-5  # the label flips although the native output was 0.01 from the boundary
    result = _fp32(native, candidate, NEWS)
    assert not result.passed and result.boundary_rows == 0
    assert any("label agreement 50.0000%" in r and "0 of the disagreements" in r for r in result.reasons)

    logits = np.array([[2.0, 2.5, -1.0], [5.0, 0.0, 0.0]], np.float32)
    flipped = logits.copy()
    flipped[0] = [2.6, 2.5, -1.0]
    result = _fp32(logits, flipped, FASHION)
    assert not result.passed and result.boundary_rows == 0

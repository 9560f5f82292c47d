"""Real torch.onnx exports and real ONNX Runtime sessions, checked by the parity stage."""

import numpy as np
import onnx
import pytest
from conftest import mlflow_client, perturbed_copy

from mlops_onnx import stages
from mlops_onnx.runtime import make_session
from mlops_onnx.tracking import RunContext

MODEL = "fashion_mnist_cnn"


def test_export_has_named_io_and_a_dynamic_batch_axis(exported_cnn):
    _, path = exported_cnn
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
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
        return ctx, stages.ingest(MODEL, ctx)

    return run


def test_parity_passes_the_real_export(ingested, exported_cnn):
    checkpoint, path = exported_cnn
    ctx, state = ingested("good")
    result = stages.parity(MODEL, ctx, state | {"checkpoint": str(checkpoint), "onnx_fp32": str(path), "variants": {}})
    assert result["parity"] == {"fp32": True}
    assert result["parity_fp32_max_abs_diff"] <= 1e-4


def test_a_changed_weight_fails_parity_and_is_recorded(ingested, exported_cnn, tmp_path):
    checkpoint, path = exported_cnn
    broken = perturbed_copy(path, tmp_path / "broken.onnx")
    ctx, state = ingested("broken")
    with pytest.raises(stages.ParityError, match="max abs diff"):
        stages.parity(MODEL, ctx, state | {"checkpoint": str(checkpoint), "onnx_fp32": str(broken), "variants": {}})
    from mlops_onnx.settings import get_settings

    run = mlflow_client(get_settings().home).get_run(state["mlflow_run_id"])
    assert run.data.tags["parity_status"] == "failed"
    assert run.data.tags["gate_status"] == "rejected"
    assert run.data.metrics["parity_fp32_passed"] == 0.0

"""The one-graph mean ensemble on hand-built ONNX members: one shared input, the mean of the members' outputs,
a dynamic batch, and members that do not fit together refused by name."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlops_onnx.onnx_ensemble import mean_ensemble
from mlops_onnx.runtime import make_session
from mlops_onnx.variants import graph_op_types


def linear_member(path, weight: np.ndarray, batch_dim: str, features: int = 3):
    """y = tanh(x @ W) with the node, edge and initializer names every member shares (as tf2onnx would)."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"], name="dense"),
            helper.make_node("Tanh", ["h"], ["y"], name="act"),
        ],
        "member",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch_dim, weight.shape[1]])],
        initializer=[numpy_helper.from_array(weight.astype(np.float32), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_the_ensemble_is_the_mean_of_its_members_for_any_batch(tmp_path):
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(3, 2)), rng.normal(size=(3, 2))]
    members = [linear_member(tmp_path / f"m{i}.onnx", w, f"unk__{i}") for i, w in enumerate(weights)]
    path = mean_ensemble(members, tmp_path / "ensemble.onnx")
    session = make_session(path)
    assert [i.name for i in session.get_inputs()] == ["x"] and [o.name for o in session.get_outputs()] == ["y"]
    assert not isinstance(session.get_inputs()[0].shape[0], int)
    assert graph_op_types(path) == {"MatMul", "Tanh", "Mean"}
    for batch in (1, 5):
        x = rng.normal(size=(batch, 3)).astype(np.float32)
        outputs = [make_session(m).run(None, {"x": x})[0] for m in members]
        ensemble = session.run(None, {"x": x})[0]
        assert ensemble.shape == (batch, 2)
        np.testing.assert_allclose(ensemble, (outputs[0] + outputs[1]) / 2, rtol=0, atol=1e-6)
        assert np.abs(outputs[0] - outputs[1]).max() > 0.1  # the members differ: a copy of one would fail


def test_members_with_different_inputs_or_outputs_are_refused(tmp_path):
    first = linear_member(tmp_path / "a.onnx", np.ones((3, 2)), "batch")
    wider = linear_member(tmp_path / "b.onnx", np.ones((4, 2)), "batch", features=4)
    more_outputs = linear_member(tmp_path / "c.onnx", np.ones((3, 5)), "batch")
    with pytest.raises(ValueError, match="member 1 inputs"):
        mean_ensemble([first, wider], tmp_path / "bad.onnx")
    with pytest.raises(ValueError, match="member 1 outputs"):
        mean_ensemble([first, more_outputs], tmp_path / "bad.onnx")
    with pytest.raises(ValueError, match="at least two members"):
        mean_ensemble([first], tmp_path / "bad.onnx")

"""Quantized and fp16 variants built from a real export and run in ONNX Runtime."""

import numpy as np

from mlops_onnx.runtime import make_session, run_batched
from mlops_onnx.variants import VARIANTS, build_variants, graph_op_types


def test_every_variant_builds_and_runs(exported_cnn, tmp_path):
    _, fp32 = exported_cnn
    rng = np.random.default_rng(0)
    calibration = rng.integers(0, 256, size=(64, 1, 28, 28)).astype(np.float32)
    built = build_variants(tuple(VARIANTS), fp32, tmp_path, calibration)
    assert {name: info["status"] for name, info in built.items()} == {n: "built" for n in VARIANTS}, built
    inputs = rng.integers(0, 256, size=(32, 1, 28, 28)).astype(np.float32)
    reference = run_batched(make_session(fp32), inputs)
    for name, info in built.items():
        out = run_batched(make_session(info["path"]), inputs)
        assert out.shape == reference.shape and np.isfinite(out).all(), name
    assert built["int8_static"]["size_bytes"] < 0.5 * fp32.stat().st_size
    assert "QuantizeLinear" in graph_op_types(built["int8_static"]["path"])


def test_a_variant_that_cannot_be_built_is_recorded_not_fatal(exported_cnn, tmp_path):
    _, fp32 = exported_cnn
    built = build_variants(("int8_static", "fp16"), fp32, tmp_path, calibration=None)
    assert built["int8_static"]["status"] == "failed" and "calibration" in built["int8_static"]["error"]
    assert built["fp16"]["status"] == "built"


def test_int8_static_keeps_the_first_and_last_layers_in_float_and_quantizes_the_rest(exported_cnn, tmp_path):
    """The first convolution and the last Gemm keep float weights and the logits stay float: int8 there swapped
    close classes on quick Fashion-MNIST runs (variants.make_int8_static)."""
    import onnx

    _, fp32 = exported_cnn
    calibration = np.random.default_rng(0).integers(0, 256, size=(64, 1, 28, 28)).astype(np.float32)
    built = build_variants(("int8_static",), fp32, tmp_path, calibration)
    graph = onnx.load(built["int8_static"]["path"]).graph
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    layers = [node for node in graph.node if node.op_type in ("Conv", "Gemm", "MatMul")]
    int8_weights = [node.input[1] in dequantized for node in layers]
    assert len(layers) == 5 and int8_weights == [False, True, True, True, False], int8_weights
    quantized = {node.input[0] for node in graph.node if node.op_type == "QuantizeLinear"}
    assert layers[-1].output[0] not in quantized and layers[-1].output[0] == graph.output[0].name

"""The GPU benchmark's checks, on real ONNX Runtime sessions on the CPU: which provider ran, which nodes
fell back to the CPU, how GPU-resident inputs are bound, and how a run turns cells into rows and notes."""

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mlops_onnx import runtime
from mlops_onnx.benchmarks import cells, report, suite
from mlops_onnx.benchmarks.bundle import BenchConfig
from mlops_onnx.runtime import CpuFallback, ProviderUnavailable

HAS_GPU = shutil.which("nvidia-smi") is not None


def tiny_model(path):
    """y = relu(x @ w) + a bias row expanded to x's batch, as tf2onnx builds an LSTM's initial state: the
    shape arithmetic (Shape, Slice, Cast, Concat) stays in the graph next to the computation."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["z"]),
        helper.make_node("Relu", ["z"], ["r"]),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Cast", ["shape"], ["shape32"], to=TensorProto.INT32),
        helper.make_node("Slice", ["shape32", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "three"], ["target32"], axis=0),
        helper.make_node("Cast", ["target32"], ["target"], to=TensorProto.INT64),
        helper.make_node("Expand", ["bias", "target"], ["bias_rows"]),
        helper.make_node("Add", ["r", "bias_rows"], ["y"]),
    ]
    constants = [
        helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.linspace(-1, 1, 12).tolist()),
        helper.make_tensor("bias", TensorProto.FLOAT, [1, 3], [0.1, 0.2, 0.3]),
        helper.make_tensor("zero", TensorProto.INT32, [1], [0]),
        helper.make_tensor("one", TensorProto.INT32, [1], [1]),
        helper.make_tensor("three", TensorProto.INT32, [1], [3]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def profiled_nodes(path, tmp_path):
    session = runtime.make_session(path, "cpu", profile_prefix=str(tmp_path / "profile"))
    session.run(None, {"x": np.ones((5, 4), np.float32)})
    return runtime.executed_nodes(runtime.end_profile(session))


def test_fallback_names_the_computation_on_the_cpu_but_not_the_shape_arithmetic(tmp_path):
    nodes = profiled_nodes(tiny_model(tmp_path / "tiny.onnx"), tmp_path)
    assert all(n["provider"] == "CPUExecutionProvider" for n in nodes) and not list(tmp_path.glob("profile*"))
    computation = {n["op"] for n in nodes if any(dtype == "float" for dtype, _ in n["outputs"])}
    shape_ops = {n["op"] for n in nodes if runtime.is_shape_arithmetic(n)}
    assert "Shape" in shape_ops and computation and not computation & shape_ops
    assert runtime.cpu_fallback(nodes, "cpu") is None  # the CPU provider running on the CPU is no fallback
    reason = runtime.cpu_fallback(nodes, "cuda")
    assert reason.startswith(f"{sum(n['op'] in computation for n in nodes)} node(s) fell back to CPUExecutionProvider")
    assert all(op in reason for op in computation) and not any(f"{op} ×" in reason for op in shape_ops)


def test_a_clean_gpu_placement_passes_and_copies_or_an_idle_tensorrt_do_not(tmp_path):
    nodes = profiled_nodes(tiny_model(tmp_path / "tiny.onnx"), tmp_path)
    on_gpu = [n if runtime.is_shape_arithmetic(n) else n | {"provider": "CUDAExecutionProvider"} for n in nodes]
    assert runtime.cpu_fallback(on_gpu, "cuda") is None  # shape arithmetic on the CPU is by design
    assert runtime.cpu_fallback(on_gpu, "tensorrt") == "TensorRT took no node of the graph (all ran on CUDA or CPU)"
    in_trt = [n | {"provider": "TensorrtExecutionProvider"} for n in on_gpu if not runtime.is_shape_arithmetic(n)]
    assert runtime.cpu_fallback(in_trt, "tensorrt") is None
    copy = {"op": "MemcpyToHost", "provider": "CUDAExecutionProvider", "outputs": [("float", [5, 3])]}
    reason = runtime.cpu_fallback([*on_gpu, copy], "cuda")
    assert reason == "1 copy node(s) move data between CPU and GPU inside the graph"


def test_check_placement_on_the_cpu_counts_nodes(tmp_path):
    placement = runtime.check_placement(tiny_model(tmp_path / "tiny.onnx"), "cpu")
    assert placement["shape_nodes_on_cpu"] == 0 and placement["nodes_by_provider"]["CPUExecutionProvider"] >= 3


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU: CUDA would load")
def test_a_gpu_session_that_falls_back_to_the_cpu_is_refused(tmp_path):
    path = tiny_model(tmp_path / "tiny.onnx")
    for provider in ("cuda", "tensorrt"):  # onnxruntime-gpu offers both here, and falls back to the CPU
        with pytest.raises(ProviderUnavailable, match="the session runs on CPUExecutionProvider") as refused:
            runtime.make_session(path, provider)
        if provider == "tensorrt":  # the reason names a library that is missing (TensorRT's, or CUDA's before it)
            assert "cannot open shared object file" in str(refused.value)
        with pytest.raises(ProviderUnavailable):
            runtime.check_placement(path, provider)
    # A provider that did not load is not tried again by a run; one graph's CPU fallback says nothing of the next.
    assert suite.provider_did_not_load("ProviderUnavailable: CUDAExecutionProvider requested for fp32.onnx ...")
    assert issubclass(CpuFallback, ProviderUnavailable) and not suite.provider_did_not_load("CpuFallback: ...")


def test_provider_options_turn_on_tensorrt_caches_and_cuda_graphs():
    trt, cuda, cpu = runtime.provider_chain("tensorrt")
    assert trt[0] == "TensorrtExecutionProvider" and cuda == ("CUDAExecutionProvider", {"use_tf32": "0"})
    assert cpu == ("CPUExecutionProvider", {})
    assert trt[1]["trt_engine_cache_enable"] == trt[1]["trt_timing_cache_enable"] == "True"
    assert trt[1]["trt_engine_cache_path"] == str(runtime.TENSORRT_CACHE) and runtime.TENSORRT_CACHE.is_dir()
    assert runtime.provider_chain("cuda", cuda_graph=True)[0][1] == {"use_tf32": "0", "enable_cuda_graph": "1"}
    assert runtime.provider_chain("tensorrt", cuda_graph=True)[0][1]["trt_cuda_graph_enable"] == "True"
    with pytest.raises(ValueError):
        runtime.provider_chain("cpu", cuda_graph=True)


def tiny_bundle(root):
    """A bundle of the tiny graph under the CNN's name: three "classes", its reference outputs the graph's own,
    so parity is judged by the CNN spec's accuracy and labels."""
    bundle = root / "fashion_mnist_classifier"
    (bundle / "onnx").mkdir(parents=True)
    path = tiny_model(bundle / "onnx" / "fp32.onnx")
    inputs = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
    reference = runtime.run_batched(runtime.make_session(path), inputs)
    np.save(bundle / "inputs.npy", inputs)
    np.save(bundle / "reference.npy", reference)
    np.save(bundle / "targets.npy", reference.argmax(1))
    meta = {
        "model": "fashion_mnist_classifier",
        "framework": "torch",
        "checkpoint": "model.pt",
        "checkpoint_bytes": 1,
        "onnx_variants": ["fp32"],
        "native_variants": [],
        "speedup_target": 3.0,
        "speedup_baseline": "native_eager",
        "registered_version": "3",
        "mlflow_run_id": "r",
        "airflow_run_id": "a",
        "data_hash": "d" * 64,
        "serving_variant": "fp32",
        "pipeline_parity": {"fp32": True},
    }
    (bundle / "meta.json").write_text(json.dumps(meta))
    return bundle


def test_bound_inputs_are_copied_once_per_array_and_never_confused(tmp_path):
    bundle = tiny_bundle(tmp_path)
    predict, fetch, info = cells.onnx_predictor(bundle, "fp32", "cpu", 1, "io_binding")
    _, host, _ = cells.onnx_predictor(bundle, "fp32", "cpu", 1, "host")
    assert info["io_binding"] and not info["cuda_graph"] and info["execution_provider"] == "CPUExecutionProvider"
    rng = np.random.default_rng(1)
    for batch in (1, 8, 1, 64, 8, 256):
        x = rng.normal(size=(batch, 4)).astype(np.float32)
        np.testing.assert_allclose(fetch(x), host(x), rtol=1e-6)
        assert predict(x) is predict(x)  # the same binding: the input is not copied again
    with pytest.raises(ValueError, match="CUDA graphs need"):  # a graph session of its own per input shape
        cells.onnx_predictor(bundle, "fp32", "cpu", 1, "cuda_graph")[0](np.ones((2, 4), np.float32))


def test_a_run_keeps_gpu_labels_off_cpu_numbers_and_says_why_each_cell_is_empty(tmp_path, monkeypatch):
    tiny_bundle(tmp_path)
    out = tmp_path / "out"
    cfg = BenchConfig(batches=(1, 256), threads=1, warmup=1, runs=5, max_seconds=1.0, cell_timeout=120)
    providers = ["cpu"] if HAS_GPU else ["cpu", "cuda", "tensorrt"]
    seen = []  # what a run cut short before each cell would leave behind
    real_worker = suite.run_worker

    def worker(*args, **kwargs):
        partial = out / "benchmark.partial.json"
        seen.append(len(json.loads(partial.read_text())["rows"]) if partial.is_file() else None)
        return real_worker(*args, **kwargs)

    monkeypatch.setattr(suite, "run_worker", worker)
    result = suite.run(tmp_path, providers, cfg, out_dir=out)
    assert seen[0] is None and seen[1] == 2 and not (out / "benchmark.partial.json").exists()
    measured = [(r["provider"], r["batch"], r["io_binding"]) for r in result["rows"]]
    assert measured == [("cpu", 1, False), ("cpu", 256, False)]
    assert all(r["parity_ok"] and r["parity_agreement"] == 1.0 for r in result["rows"])
    assert result["profiles"]["fashion_mnist_classifier:cpu"]["top_ops"]
    assert result["models"]["fashion_mnist_classifier"]["native_quality"] == 1.0  # the spec's accuracy on the targets
    assert all(r["peak_rss_mb"] >= r["rss_before_load_mb"] > 0 for r in result["rows"])
    if HAS_GPU:
        return
    notes = {(n["provider"], n["binding"]): n["reason"] for n in result["notes"]}
    assert set(notes) == {("cuda", "host"), ("cuda", "io_binding"), ("cuda", "cuda_graph"), ("tensorrt", "io_binding")}
    assert notes["cuda", "host"].startswith("ProviderUnavailable: CUDAExecutionProvider requested for fp32.onnx")
    assert notes["cuda", "cuda_graph"].endswith("(its first ONNX cell; not started again)")
    assert "fashion_mnist_classifier:cuda" not in result["profiles"]  # nor profiled on a provider that did not load
    result["targets"] = report.targets(result)
    text = report.markdown(result)
    assert "| fashion_mnist_classifier | onnx_fp32 | cuda (I/O binding, CUDA graph) | ProviderUnavailable" in text
    table = report.readme_table(result)  # a provider without rows gets no column
    header = "| model | architecture | registered | variant | CPU b=1 | CPU b=256 | parity |"
    assert header in table and "CUDA" not in table.split("\n\n")[1]


def test_a_cells_parity_is_judged_by_the_models_spec(tmp_path):
    from mlops_onnx.models import load_spec

    bundle = tiny_bundle(tmp_path)
    spec = load_spec("fashion_mnist_classifier")
    reference = np.load(bundle / "reference.npy")
    assert suite.parity_fields(spec, bundle, "onnx_fp32", reference.copy())["parity_ok"]
    moved = reference.copy()
    moved[0] = 0.0
    moved[0, (reference[0].argmax() + 1) % 3] = 10.0  # one of 256 labels changes
    fp32 = suite.parity_fields(spec, bundle, "onnx_fp32", moved)
    assert not fp32["parity_ok"] and fp32["parity_agreement"] == 255 / 256
    assert any("max abs diff" in reason for reason in fp32["parity_reasons"])
    # a quantized variant may move a label: 99.6 % agreement, accuracy 0.4 points down are within its rules
    assert suite.parity_fields(spec, bundle, "onnx_int8_static", moved)["parity_ok"]


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU: CUDA would load")
def test_the_nightly_gpu_benchmark_is_skipped_with_the_reason_without_cuda(tmp_path):
    from mlops_onnx.benchmarks.nightly import gpu_report

    bundle = tiny_bundle(tmp_path)
    cfg = BenchConfig(batches=(1,), threads=1, warmup=1, runs=5, max_seconds=1.0)
    result = gpu_report(bundle, cfg, tmp_path / "benchmark_gpu.json")  # a fresh interpreter, as the GPU task runs it
    assert result["status"] == "skipped" and "rows" not in result
    assert result["reason"].startswith("GPU not used: CUDAExecutionProvider requested for fp32.onnx")

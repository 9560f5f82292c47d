"""One cell of a benchmark: a model's variant on one provider, fed one way, timed at each batch size.

A cell reads only its bundle. `measure` builds the predictor (an ONNX Runtime session, or the native
model through its spec), runs it once on the whole sample (the outputs go back for parity), then times
each batch size. Peak memory is `monitoring.PeakMemory`, the sampler every task's `peak_rss_mb_<task>`
comes from: the process's RSS and its children's, at most 50 ms apart and read again after each batch.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mlops_onnx.benchmarks.bundle import BenchConfig, load_meta
from mlops_onnx.benchmarks.timing import batch_of, latency_row, time_calls
from mlops_onnx.monitoring import PeakMemory

BINDINGS = ("host", "io_binding", "cuda_graph")  # how an ONNX cell feeds its session; see onnx_predictor
Predict = Callable[[np.ndarray], object]


def model_file(bundle: Path, variant: str, provider: str) -> Path:
    """The file a session of `variant` loads: the offline-optimised copy on the CPU provider; the plain file
    on the others, since the saved graph holds CPU-only fused kernels that would run on the CPU there."""
    raw, optimized = bundle / "onnx" / f"{variant}.onnx", bundle / "onnx" / f"{variant}.opt.onnx"
    return optimized if optimized.is_file() and provider == "cpu" else raw


def onnx_predictor(bundle: Path, variant: str, provider: str, threads: int, binding: str = "host"):
    """(predict, fetch, info) for an ONNX variant. `binding`: "host" feeds numpy arrays (copies to and
    from the device are timed); "io_binding" copies each input to the provider's device once and leaves
    the output there (only the run is timed); "cuda_graph" also replays the run as one CUDA graph, with a
    session per input shape, since a graph is captured for fixed shapes and buffer addresses. `fetch`
    returns the output on the host, for parity. On a GPU provider the first session is a profiled run
    that fails the cell if any computation fell back to the CPU (runtime.check_placement)."""
    from mlops_onnx.runtime import check_placement, make_session

    raw, path = bundle / "onnx" / f"{variant}.onnx", model_file(bundle, variant, provider)
    # The process's first session pays ONNX Runtime's own start-up (and the GPU's); off the CPU it is the check.
    placement = check_placement(path, provider, threads) if provider != "cpu" else {}
    if provider == "cpu":
        make_session(raw, provider, threads)
    started = time.perf_counter()
    make_session(raw, provider, threads)
    load_raw_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    session = make_session(path, provider, threads)
    load_ms = (time.perf_counter() - started) * 1000
    name, output = session.get_inputs()[0].name, session.get_outputs()[0].name
    info = {
        "execution_provider": session.get_providers()[0],
        "size_bytes": raw.stat().st_size,
        "session_load_ms": round(load_ms, 2),
        "session_load_raw_ms": round(load_raw_ms, 2),
        "optimized_file": path != raw,
        "io_binding": binding != "host",
        "cuda_graph": binding == "cuda_graph",
        **placement,
    }

    def host(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    if binding == "host":
        return host, host, info
    import onnxruntime as ort

    device = "cpu" if provider == "cpu" else "cuda"
    bound: dict[int, tuple] = {}  # per input array (kept alive, so its id is never reused): its binding

    def run_bound(x: np.ndarray):
        entry = bound.get(id(x))
        if entry is None:
            own = make_session(path, provider, threads, cuda_graph=True) if binding == "cuda_graph" else session
            x_on_device = ort.OrtValue.ortvalue_from_numpy(x, device, 0)
            sample = host(x[:1])  # the output's shape past the batch and its dtype
            y_on_device = ort.OrtValue.ortvalue_from_shape_and_type(
                [len(x), *sample.shape[1:]], sample.dtype, device, 0
            )
            io = own.io_binding()
            io.bind_ortvalue_input(name, x_on_device)
            io.bind_ortvalue_output(output, y_on_device)  # fixed buffer on the device: no host copy is timed
            entry = bound[id(x)] = (x, own, io, x_on_device, y_on_device)
        entry[1].run_with_iobinding(entry[2])  # returns once the device has finished (ORT synchronises the run)
        return entry[2]

    return run_bound, (lambda x: run_bound(x).copy_outputs_to_cpu()[0]), info


def native_predictors(bundle: Path, provider: str, cfg: BenchConfig) -> tuple[dict[str, Predict], dict]:
    """Every native path of the bundle's model on `provider`'s device (the spec's `native_predictors`,
    compiled ones included), and what the rows say of them; empty where the framework has no such device."""
    from mlops_onnx.models import load_spec
    from mlops_onnx.settings import get_settings

    meta = load_meta(bundle)
    device = "cuda" if provider == "cuda" else "cpu"
    if provider == "tensorrt":
        return {}, {}
    spec = load_spec(meta["model"], meta.get("architecture"))
    if device == "cuda" and "torch" in sys.modules:  # fp32 math, as in ONNX Runtime's CUDA sessions (no TF32)
        torch = sys.modules["torch"]
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    started = time.perf_counter()
    predictors = spec.native_predictors(bundle / meta["checkpoint"], cfg.settings(get_settings()), device, True)
    info = {
        "execution_provider": f"{meta['framework']}:{device}",
        "size_bytes": meta["checkpoint_bytes"],
        "session_load_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    return predictors, info


def predictor(bundle: Path, variant: str, provider: str, cfg: BenchConfig, binding: str = "host"):
    """(predict, fetch, info) of one cell's variant (`native_*` or `onnx_*`)."""
    if variant.startswith("onnx_"):
        return onnx_predictor(bundle, variant.removeprefix("onnx_"), provider, cfg.threads, binding)
    natives, info = native_predictors(bundle, provider, cfg)
    if variant not in natives:
        meta = load_meta(bundle)
        why = f" ({meta['framework']} runs on the CPU only here)" if provider != "cpu" and not natives else ""
        raise LookupError(f"{meta['model']} has no {variant} on {provider}{why}")
    return natives[variant], natives[variant], info  # on CUDA a host array: the copy back waits for the GPU


def time_batches(
    predict: Predict,
    model: str,
    variant: str,
    provider: str,
    inputs: np.ndarray,
    cfg: BenchConfig,
    info: dict,
    memory: PeakMemory,
) -> list[dict]:
    """The rows of one predictor: each batch size timed, with the peak RSS so far read after each."""
    rows = []
    for batch in cfg.batches:
        x = batch_of(inputs, batch)
        latencies = time_calls(lambda x=x: predict(x), cfg.warmup, cfg.runs, cfg.max_seconds)
        memory.sample()
        rows.append(
            latency_row(model, variant, provider, batch, latencies)
            | {"warmup": cfg.warmup, "threads": cfg.threads, "peak_rss_mb": round(memory.peak_mb, 1), **info}
        )
    return rows


def measure(
    bundle: Path, variant: str, provider: str, cfg: BenchConfig, binding: str = "host"
) -> tuple[list[dict], np.ndarray]:
    """The rows of one (model, variant, provider, binding) and its outputs on the bundle's whole sample."""
    meta = load_meta(bundle)
    inputs = np.load(bundle / "inputs.npy")
    with PeakMemory() as memory:
        before = round(memory.peak_mb, 1)
        predict, fetch, info = predictor(bundle, variant, provider, cfg, binding)
        outputs = np.asarray(fetch(inputs), dtype=np.float32)
        rows = time_batches(predict, meta["model"], variant, provider, inputs, cfg, info, memory)
    for row in rows:
        row["rss_before_load_mb"] = before
    if provider == "cuda" and variant.startswith("native") and "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            for row in rows:
                row["gpu_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return rows, outputs


def profile_onnx(bundle: Path, variant: str, provider: str, threads: int, runs: int = 200) -> dict:
    """ONNX Runtime's profiler on batch 1: time per operator type and the share outside operators (on a
    GPU provider an operator's time is the host's side of it: the kernel launches, not the GPU's work)."""
    import tempfile

    from mlops_onnx.runtime import end_profile, make_session

    with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
        session = make_session(
            model_file(bundle, variant, provider),
            provider,
            threads,
            profile_prefix=str(Path(tmp) / f"{variant}_{provider}"),
        )
        feed = {session.get_inputs()[0].name: np.load(bundle / "inputs.npy")[:1]}
        for _ in range(runs):
            session.run(None, feed)
        trace = end_profile(session)
    by_op: dict[str, float] = {}
    model_run_us = 0.0
    for event in trace:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + event["dur"]
        elif event.get("cat") == "Session" and event.get("name") == "model_run":
            model_run_us += event["dur"]
    kernels = sum(by_op.values())
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:8]
    return {
        "variant": variant,
        "provider": provider,
        "runs": runs,
        "model_run_us_per_call": round(model_run_us / runs, 2),
        "kernel_us_per_call": round(kernels / runs, 2),
        "outside_kernels_share": round(1 - kernels / model_run_us, 3) if model_run_us else None,
        "top_ops": [{"op": op, "us_per_call": round(us / runs, 2), "share": round(us / kernels, 3)} for op, us in top],
    }

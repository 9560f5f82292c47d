"""ONNX Runtime sessions: created one way everywhere, with the provider that actually ran checked."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
# TensorRT builds an engine per model and shape profile, which takes seconds to minutes: keep the engines
# and the kernel timing cache between processes, so only the first session of a model pays for the build.
TENSORRT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlops_onnx" / "tensorrt"
COPY_OPS = ("MemcpyFromHost", "MemcpyToHost")


class ProviderUnavailable(RuntimeError):
    """The requested execution provider did not load; ONNX Runtime fell back silently."""


class CpuFallback(ProviderUnavailable):
    """The GPU provider loaded, but part of the graph's computation runs on the CPU."""


def session_options(threads: int = 1, profile_prefix: str | None = None):
    """Tuned once for every session: all graph optimisations, `threads` intra-op threads (0 = all
    cores), one inter-op thread and sequential execution (these graphs have no parallel branches
    worth a second pool), quiet logs; optionally ONNX Runtime's profiler."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def provider_chain(provider: str, cuda_graph: bool = False) -> list[tuple[str, dict[str, str]]]:
    """`provider`'s execution providers in order of preference, each with its options: TensorRT with
    its engine and timing caches on; CUDA with TF32 off, so an fp32 graph computes in fp32 (with the
    default TF32 convolutions the CNN's logits moved by 5e-3 on an H200 and failed fp32 parity); CUDA
    graphs (captured on the first runs, then replayed) on request."""
    if cuda_graph and provider == "cpu":
        raise ValueError("CUDA graphs need the cuda or tensorrt provider")
    chain = []
    for name in PROVIDERS[provider]:
        options: dict[str, str] = {}
        if name == "TensorrtExecutionProvider":
            TENSORRT_CACHE.mkdir(parents=True, exist_ok=True)
            options = {
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(TENSORRT_CACHE),
                "trt_timing_cache_enable": "True",
                "trt_timing_cache_path": str(TENSORRT_CACHE),
            }
            if cuda_graph:
                options["trt_cuda_graph_enable"] = "True"
        elif name == "CUDAExecutionProvider":
            options = {"use_tf32": "0"} | ({"enable_cuda_graph": "1"} if cuda_graph and provider == "cuda" else {})
        chain.append((name, options))
    return chain


def optimize_offline(model_path: Path | str, out_path: Path | str) -> Path:
    """Save ONNX Runtime's optimised graph once (`optimized_model_filepath`), so a load does not
    re-optimise from scratch. Extended level, CPU provider: the saved graph stays portable between
    machines; the hardware-specific layout passes (ORT_ENABLE_ALL) still run, quickly, at load."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(out_path)
    options.log_severity_level = 3
    ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    return Path(out_path)


def make_session(
    model_path: Path | str,
    provider: str = "cpu",
    threads: int = 1,
    profile_prefix: str | None = None,
    cuda_graph: bool = False,
):
    """A session on `provider` with `threads` intra-op threads (0 = ONNX Runtime's default, all cores);
    `cuda_graph`: replay the graph as one CUDA graph (needs I/O binding with fixed input and output buffers)."""
    import onnxruntime as ort

    options = session_options(threads, profile_prefix)
    if provider != "cpu" and hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels, if installed
        try:
            ort.preload_dlls()
        except Exception as exc:  # a missing library shows up as the fallback checked below
            log.debug("onnxruntime.preload_dlls: %s", exc)
    session = ort.InferenceSession(
        str(model_path), sess_options=options, providers=provider_chain(provider, cuda_graph)
    )
    wanted = PROVIDERS[provider][0]
    if session.get_providers()[0] != wanted:
        raise ProviderUnavailable(
            f"{wanted} requested for {Path(model_path).name} but the session runs on "
            f"{session.get_providers()[0]} (ONNX Runtime fell back{why_not_loaded(provider)})"
        )
    return session


def why_not_loaded(provider: str) -> str:
    """What the dynamic loader says of the provider's library (a missing CUDA, cuDNN or TensorRT
    library, by name), as ": <reason>"; "" when it loads, e.g. on a machine with the libraries but no GPU."""
    import ctypes

    import onnxruntime as ort

    library = Path(ort.__file__).parent / "capi" / f"libonnxruntime_providers_{provider}.so"
    if not library.is_file():
        return f": {library.name} is not part of this onnxruntime build"
    try:
        ctypes.CDLL(str(library))
    except OSError as exc:
        return f": {exc}"
    return ""


def end_profile(session) -> list[dict]:
    """Stop the session's profiler and return its trace (ONNX Runtime's JSON events); the file is removed."""
    trace_file = Path(session.end_profiling())
    try:
        return json.loads(trace_file.read_text())
    finally:
        trace_file.unlink(missing_ok=True)


def executed_nodes(trace: list[dict]) -> list[dict]:
    """Each node a profiled run executed, once: its operator, the provider that ran it and its outputs'
    element types and shapes (copy nodes between CPU and GPU included)."""
    nodes: dict[str, dict] = {}
    for event in trace:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            args = event.get("args", {})
            outputs = [(dtype, shape) for out in args.get("output_type_shape", []) for dtype, shape in out.items()]
            node = {"op": args.get("op_name", "?"), "provider": args.get("provider", "?"), "outputs": outputs}
            nodes.setdefault(event["name"].removesuffix("_kernel_time"), node)
    return list(nodes.values())


def is_shape_arithmetic(node: dict) -> bool:
    """A node whose every output is an integer vector or scalar: arithmetic on a tensor's dimensions, which
    ONNX Runtime keeps on the CPU by design next to a GPU provider (its `GetCpuPreferredNodes`)."""
    outputs = node["outputs"]
    return bool(outputs) and all(dtype in ("int64", "int32") and len(shape) <= 1 for dtype, shape in outputs)


def cpu_fallback(nodes: list[dict], provider: str) -> str | None:
    """Why a run of `nodes` is not a clean measurement of `provider`, or None: computation on the CPU
    (shape arithmetic aside), data copied between CPU and GPU inside the graph, or TensorRT that took none of it."""
    if provider == "cpu":
        return None
    reasons = []
    on_cpu = Counter(
        n["op"]
        for n in nodes
        if n["provider"] == "CPUExecutionProvider" and n["op"] not in COPY_OPS and not is_shape_arithmetic(n)
    )
    if on_cpu:
        reasons.append(
            f"{sum(on_cpu.values())} node(s) fell back to CPUExecutionProvider ("
            + ", ".join(f"{op} ×{count}" for op, count in sorted(on_cpu.items()))
            + ")"
        )
    copies = sum(n["op"] in COPY_OPS for n in nodes)
    if copies:
        reasons.append(f"{copies} copy node(s) move data between CPU and GPU inside the graph")
    if provider == "tensorrt" and not any(n["provider"] == "TensorrtExecutionProvider" for n in nodes):
        reasons.append("TensorRT took no node of the graph (all ran on CUDA or CPU)")
    return "; ".join(reasons) or None


def check_placement(model_path: Path | str, provider: str, threads: int = 1) -> dict:
    """Run `model_path` once on `provider` under ONNX Runtime's profiler, on zeros of batch 1, and raise
    CpuFallback if any computation ran on the CPU; else return where the nodes ran."""
    with tempfile.TemporaryDirectory(prefix="ort-placement-") as tmp:
        session = make_session(model_path, provider, threads, profile_prefix=str(Path(tmp) / "placement"))
        session.run(
            None,
            {
                i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], numpy_dtype(i.type))
                for i in session.get_inputs()
            },
        )
        nodes = executed_nodes(end_profile(session))
    reason = cpu_fallback(nodes, provider)
    if reason:
        raise CpuFallback(f"{Path(model_path).name} on {provider}: {reason}")
    on_cpu = sum(n["provider"] == "CPUExecutionProvider" for n in nodes) if provider != "cpu" else 0
    return {"nodes_by_provider": dict(Counter(n["provider"] for n in nodes)), "shape_nodes_on_cpu": on_cpu}


def numpy_dtype(onnx_type: str) -> type:
    """The numpy dtype of an ONNX tensor type (`tensor(int64)`, ...); float32 for anything else."""
    return {
        "tensor(int64)": np.int64,
        "tensor(int32)": np.int32,
        "tensor(float16)": np.float16,
        "tensor(double)": np.float64,
        "tensor(bool)": np.bool_,
    }.get(onnx_type, np.float32)


def input_dtype(session) -> type:
    """The numpy dtype of the session's first input (token ids are int32 or int64, the rest float32)."""
    return numpy_dtype(session.get_inputs()[0].type)


def run_batched(session, inputs: np.ndarray, batch: int = 512) -> np.ndarray:
    """Run a single-input, single-output session over `inputs` in batches."""
    name = session.get_inputs()[0].name
    parts = [session.run(None, {name: inputs[i : i + batch]})[0] for i in range(0, len(inputs), batch)]
    return np.concatenate(parts, axis=0)

"""Timing and rows: latency percentiles of a predictor, the fastest native path, the machine it ran on."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

MIN_RUNS = 3  # timed calls a measurement gets even past its time budget
PACKAGES = (
    "torch",
    "onnxruntime-gpu",
    "onnxruntime",
    "onnx",
    "numpy",
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "tf2onnx",
    "mlflow",
)


def time_calls(fn: Callable[[], object], warmup: int, runs: int, max_seconds: float = float("inf")) -> np.ndarray:
    """Latencies in ms of up to `runs` timed calls after up to `warmup` calls, within `max_seconds` for the
    whole measurement: the warm-up stops once a quarter of it is spent (after one call at least), the timed
    calls once all of it is, after MIN_RUNS of them at least. So a slow predictor (Keras eager at ~1 s a
    call, a transformer at ~4 s a batch of 64) costs about the budget, not minutes; the row says how many
    runs it got."""
    started = time.perf_counter()
    for _ in range(warmup):
        fn()
        if time.perf_counter() - started > max_seconds / 4:
            break
    deadline = started + max_seconds
    latencies = []
    for _ in range(runs):
        call = time.perf_counter()
        fn()
        done = time.perf_counter()
        latencies.append(done - call)
        if len(latencies) >= MIN_RUNS and done > deadline:
            break
    return np.asarray(latencies) * 1000.0


def batch_of(inputs: np.ndarray, batch: int) -> np.ndarray:
    """`batch` rows of `inputs`, repeated when there are fewer; a contiguous copy."""
    reps = -(-batch // len(inputs))
    return np.ascontiguousarray(np.concatenate([inputs] * reps)[:batch]) if reps > 1 else inputs[:batch].copy()


def latency_row(model: str, variant: str, provider: str, batch: int, latencies_ms: np.ndarray) -> dict:
    """One benchmark row's timing columns; the caller adds what ran it (sizes, provider, memory, parity)."""
    p50, p95, p99 = np.percentile(latencies_ms, [50, 95, 99])
    return {
        "model": model,
        "variant": variant,
        "provider": provider,
        "batch": batch,
        "p50_ms": round(float(p50), 4),
        "p95_ms": round(float(p95), 4),
        "p99_ms": round(float(p99), 4),
        "mean_ms": round(float(latencies_ms.mean()), 4),
        "throughput_per_s": round(batch * 1000.0 / float(latencies_ms.mean()), 2),
        "runs": len(latencies_ms),
    }


PROBE_SECONDS = 2.0  # a native path slower than this over its probe is timed once more, not `calls` times


def fastest_native(
    natives: dict[str, Callable[[np.ndarray], np.ndarray]], x: np.ndarray, calls: int
) -> tuple[str, dict[str, dict[str, float]]]:
    """The native path with the lowest median latency over up to `calls` calls on `x` (after one call that
    compiles or traces it), and each path's probe: its median ms, calls and the seconds it took. A path
    whose probe passes PROBE_SECONDS stops there (Keras eager at ~1 s a call is not a contender)."""
    probes: dict[str, dict[str, float]] = {}
    for name, predict in natives.items():
        started = time.perf_counter()
        predict(x)
        latencies = []
        while len(latencies) < calls and (not latencies or time.perf_counter() - started < PROBE_SECONDS):
            call_started = time.perf_counter()
            predict(x)
            latencies.append((time.perf_counter() - call_started) * 1000.0)
        probes[name] = {
            "p50_ms": round(float(np.median(latencies)), 4),
            "calls": len(latencies),
            "seconds": round(time.perf_counter() - started, 2),
        }
    return min(probes, key=lambda name: probes[name]["p50_ms"]), probes


def metrics_from(rows: list[dict]) -> dict[str, float]:
    """`bench_<provider>_<variant>_b<batch>_<stat>` metrics for the DAG run's MLflow run."""
    metrics = {}
    for row in rows:
        prefix = f"bench_{row['provider']}_{row['variant']}_b{row['batch']}"
        for stat in ("p50_ms", "p95_ms", "p99_ms", "throughput_per_s"):
            metrics[f"{prefix}_{stat}"] = row[stat]
    return metrics


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(threads: int, providers: tuple[str, ...] | list[str] = ("cpu",)) -> dict:
    """The CPU, the library versions, the providers ONNX Runtime offers and, when a GPU provider is
    asked for, the GPU (from nvidia-smi)."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    info: dict = {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "threads": threads,
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "gpu": None,
    }
    try:
        import onnxruntime  # with two distributions installed side by side, say which one the sessions used

        for package in ("onnxruntime-gpu", "onnxruntime"):
            if versions.get(package) not in (None, onnxruntime.__version__):
                versions[package] += " (installed, not the one imported)"
        info["onnxruntime_available_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    if set(providers) - {"cpu"}:
        try:
            query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,compute_cap", "--format=csv,noheader"]
            info["gpu"] = subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            pass
    return info


GPU_LIBRARIES = {  # soname prefix -> (version function, divisor of the major version, of the minor)
    "libcuda.so": ("cuDriverGetVersion", 1000, 10),
    "libcudart.so": ("cudaRuntimeGetVersion", 1000, 10),
    "libcudnn.so": ("cudnnGetVersion", 10000, 100),
    "libcublasLt.so": ("cublasLtGetVersion", 10000, 100),
    "libnvinfer.so": ("getInferLibVersion", 10000, 100),
}


def gpu_stack() -> dict:
    """The GPU libraries this process has loaded (from /proc/self/maps) with the versions they report
    themselves: what a GPU number was measured with, whatever else is installed on the machine."""
    import ctypes

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        maps = ""
    loaded: dict[str, str] = {}
    for path in (line.split(maxsplit=5)[-1] for line in maps.splitlines() if line.count(" /")):
        name = Path(path).name
        for prefix in GPU_LIBRARIES:
            if name == prefix or name.startswith(prefix + "."):
                loaded.setdefault(prefix, path)
    stack: dict[str, object] = {"libraries": loaded}
    for prefix, path in loaded.items():
        function, major, minor = GPU_LIBRARIES[prefix]
        try:
            library = ctypes.CDLL(path)
            if function in ("cuDriverGetVersion", "cudaRuntimeGetVersion"):  # int f(int *)
                out = ctypes.c_int()
                getattr(library, function)(ctypes.byref(out))
                value = out.value
            else:  # size_t f(void)
                getattr(library, function).restype = ctypes.c_size_t
                value = getattr(library, function)()
        except (OSError, AttributeError):
            continue
        stack[prefix.removeprefix("lib").removesuffix(".so")] = version_string(value, major, minor)
    try:
        import onnxruntime as ort

        stack["onnxruntime"] = ort.__version__
        from onnxruntime.capi import build_and_package_info

        stack["onnxruntime_built_for_cuda"] = getattr(build_and_package_info, "cuda_version", None)
    except ImportError:
        pass
    if "torch" in sys.modules:  # a PyTorch cell: the CUDA and cuDNN it was built with
        torch = sys.modules["torch"]
        stack["torch_cuda"] = torch.version.cuda
        cudnn = torch.backends.cudnn.version()
        stack["torch_cudnn"] = version_string(cudnn, 10000, 100) if cudnn else None
    return stack


def version_string(value: int, major: int, minor: int) -> str:
    """A library's integer version as text: 13000 -> "13.0" (CUDA), 91300 -> "9.13.0" (cuDNN)."""
    text = f"{value // major}.{value % major // minor}"
    return text if minor == 10 else f"{text}.{value % minor}"

"""Latency benchmarks: native model vs every ONNX variant, same inputs, fixed threads, warm-up.

GPU runs happen in a fresh interpreter (`python -m mlops_onnx.benchmark ...`): CUDA cannot be
initialised in the forked worker processes Airflow runs tasks in.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

BATCH_SIZES = (1, 64)


@dataclass
class BenchRow:
    model: str
    variant: str  # native_eager, onnx_fp32, onnx_int8_static, ...
    provider: str  # what actually ran: cpu, cuda, tensorrt
    batch: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    throughput_per_s: float
    runs: int
    size_bytes: int | None
    execution_provider: str  # the ONNX Runtime provider (or torch/keras device) that ran


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(threads: int) -> dict:
    versions = {}
    for package in (
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
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    try:
        import onnxruntime  # with two distributions installed side by side, say which one the sessions used

        for package in ("onnxruntime-gpu", "onnxruntime"):
            if versions.get(package) not in (None, onnxruntime.__version__):
                versions[package] += " (installed, not the one imported)"
    except ImportError:
        pass
    return {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


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


MIN_RUNS = 10


def time_calls(fn: Callable[[], object], warmup: int, runs: int, max_seconds: float = float("inf")) -> np.ndarray:
    """Latencies in ms of `runs` calls after `warmup` calls; a predictor slower than the time budget
    stops early (after at least MIN_RUNS timed calls) so one slow native path cannot take minutes."""
    deadline = time.perf_counter() + max_seconds
    for _ in range(warmup):
        fn()
        if time.perf_counter() > deadline:
            break
    latencies = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        latencies.append(time.perf_counter() - started)
        if len(latencies) >= MIN_RUNS and started > deadline:
            break
    return np.asarray(latencies) * 1000.0


def batch_of(inputs: np.ndarray, batch: int) -> np.ndarray:
    reps = -(-batch // len(inputs))
    return np.ascontiguousarray(np.concatenate([inputs] * reps)[:batch]) if reps > 1 else inputs[:batch].copy()


def summarize(
    model: str,
    variant: str,
    provider: str,
    execution_provider: str,
    batch: int,
    latencies_ms: np.ndarray,
    size_bytes: int | None,
) -> BenchRow:
    p50, p95, p99 = np.percentile(latencies_ms, [50, 95, 99])
    return BenchRow(
        model=model,
        variant=variant,
        provider=provider,
        batch=batch,
        p50_ms=round(float(p50), 4),
        p95_ms=round(float(p95), 4),
        p99_ms=round(float(p99), 4),
        mean_ms=round(float(latencies_ms.mean()), 4),
        throughput_per_s=round(batch * 1000.0 / float(latencies_ms.mean()), 2),
        runs=len(latencies_ms),
        size_bytes=size_bytes,
        execution_provider=execution_provider,
    )


def run_benchmark(
    model: str,
    natives: dict[str, Callable[[np.ndarray], np.ndarray]],
    native_size: int | None,
    onnx_models: dict[str, str],
    inputs: np.ndarray,
    provider: str,
    threads: int,
    warmup: int,
    runs: int,
    native_device: str,
    max_seconds: float = float("inf"),
) -> dict:
    """Benchmark native predictors and ONNX models (variant -> path) on one provider."""
    from mlops_onnx.runtime import ProviderUnavailable, check_placement, make_session

    rows: list[BenchRow] = []
    notes: dict[str, str] = {}
    for batch in BATCH_SIZES:
        x = batch_of(inputs, batch)
        for name, predict in natives.items():
            lat = time_calls(lambda p=predict, x=x: p(x), warmup, runs, max_seconds)
            rows.append(summarize(model, name, provider, native_device, batch, lat, native_size))
        for variant, path in onnx_models.items():
            try:
                if provider != "cpu":  # a GPU number only if no computation fell back to the CPU
                    check_placement(path, provider, threads)
                session = make_session(path, provider, threads)
            except ProviderUnavailable as exc:
                notes[f"onnx_{variant}"] = str(exc)
                continue
            feed = {session.get_inputs()[0].name: x}
            lat = time_calls(lambda s=session, f=feed: s.run(None, f), warmup, runs, max_seconds)
            rows.append(
                summarize(
                    model,
                    f"onnx_{variant}",
                    provider,
                    session.get_providers()[0],
                    batch,
                    lat,
                    Path(path).stat().st_size,
                )
            )
    return {
        "machine": machine_info(threads),
        "provider": provider,
        "warmup": warmup,
        "runs": runs,
        "max_seconds_per_measurement": max_seconds,
        "rows": [asdict(r) for r in rows],
        "notes": notes,
    }


def metrics_from(report: dict) -> dict[str, float]:
    """`bench_<provider>_<variant>_b<batch>_<stat>` metrics for MLflow."""
    metrics = {}
    for row in report["rows"]:
        prefix = f"bench_{row['provider']}_{row['variant']}_b{row['batch']}"
        for stat in ("p50_ms", "p95_ms", "p99_ms", "throughput_per_s"):
            metrics[f"{prefix}_{stat}"] = row[stat]
    return metrics


def cuda_report(model: str, state: dict, out: Path) -> dict:
    """The GPU benchmark, run in a fresh interpreter; writes `out` and returns it."""
    from mlops_onnx.models import load_spec
    from mlops_onnx.runtime import ProviderUnavailable, make_session
    from mlops_onnx.settings import get_settings
    from mlops_onnx.snapshots import SnapshotStore

    settings = get_settings()
    spec = load_spec(model)
    fp32 = state["onnx_fp32"]
    try:
        make_session(fp32, "cuda", settings.bench_threads)
    except ProviderUnavailable as exc:
        report = {"status": "skipped", "reason": f"GPU not used: {exc}"}
    else:
        snapshot = SnapshotStore(settings.snapshots_dir).get(spec.dataset.name, state["snapshot"])
        inputs = spec.evaluation_data(snapshot, settings, Path(state["workdir"])).inputs
        onnx_models = {"fp32": fp32} | {name: path for name, path in state["passing_variants"].items()}
        providers = {}
        notes = {}
        for provider in ("cuda", "tensorrt"):
            try:
                natives = (
                    spec.native_predictors(Path(state["checkpoint"]), settings, device="cuda")
                    if provider == "cuda"
                    else {}
                )
                providers[provider] = run_benchmark(
                    model,
                    natives,
                    None,
                    onnx_models,
                    inputs,
                    provider,
                    settings.bench_threads,
                    settings.bench_warmup,
                    settings.bench_runs,
                    "cuda",
                    settings.bench_max_seconds,
                )
            except Exception as exc:  # e.g. TensorRT cannot build an engine: report it, keep CUDA's rows
                notes[provider] = f"{type(exc).__name__}: {exc}"[:500]
        rows = [row for p in providers.values() for row in p["rows"]]
        notes |= {f"{p}:{k}": v for p, r in providers.items() for k, v in r["notes"].items()}
        report = {
            "status": "ok" if rows else "skipped",
            "machine": machine_info(settings.bench_threads),
            "rows": rows,
            "notes": notes,
        }
        if not rows:
            report["reason"] = "GPU not used: no provider ran on the GPU"
    out.write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GPU benchmark of one pipeline run (fresh interpreter).")
    parser.add_argument("--model", required=True)
    parser.add_argument("--state", required=True, type=Path, help="JSON state of the DAG run")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    report = cuda_report(args.model, json.loads(args.state.read_text()), args.out)
    print(json.dumps({"status": report["status"], "reason": report.get("reason", "")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

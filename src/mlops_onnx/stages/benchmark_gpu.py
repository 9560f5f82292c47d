"""`benchmark_gpu`: the benchmark on CUDA (and TensorRT), in a fresh interpreter; skipped without a GPU."""

from __future__ import annotations

from pathlib import Path

from mlops_onnx.settings import get_settings
from mlops_onnx.stages import StageSkipped, mlflow_run, stage
from mlops_onnx.tracking import RunContext


@stage(reads=("checkpoint", "onnx_fp32", "passing_variants", "preprocessing", "evaluation_files"))
def benchmark_gpu(spec, ctx: RunContext, state: dict) -> dict:
    """The same benchmark on CUDA (and TensorRT when it loads), in a fresh interpreter; skipped without a GPU."""
    import shutil
    import tempfile

    import mlflow

    from mlops_onnx.benchmarks.bundle import BenchConfig, bundle_from_state
    from mlops_onnx.benchmarks.nightly import gpu_report
    from mlops_onnx.benchmarks.timing import metrics_from

    settings = get_settings()
    out = Path(state["workdir"]) / "reports" / "benchmark_gpu.json"
    with tempfile.TemporaryDirectory(prefix=f"bench-gpu-{spec.name}-") as tmp:
        bundle = Path(tmp) / "bundle"
        bundle_from_state(spec, state, settings, bundle)
        report = gpu_report(bundle, BenchConfig.nightly(settings), Path(tmp) / "benchmark_gpu.json")
        if report["status"] == "ok":
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(tmp) / "benchmark_gpu.json", out)
    with mlflow_run(state):
        if report["status"] != "ok":
            mlflow.set_tag("bench_gpu_status", report["reason"][:500])
        else:
            mlflow.log_artifact(str(out), "reports")
            mlflow.log_metrics(metrics_from(report["rows"]))
            mlflow.set_tag("bench_gpu_status", "ok")
    if report["status"] != "ok":
        raise StageSkipped(report["reason"])
    return {**state, "bench_gpu": "ok"}

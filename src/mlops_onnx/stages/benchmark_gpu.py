"""`benchmark_gpu`: the benchmark on CUDA (and TensorRT), in a fresh interpreter; skipped without a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mlops_onnx.stages import GPU_STATE_FILE, StageSkipped, mlflow_run, stage, write_report
from mlops_onnx.tracking import RunContext


@stage(reads=("checkpoint", "onnx_fp32", "passing_variants", "preprocessing", "evaluation_files"))
def benchmark_gpu(spec, ctx: RunContext, state: dict) -> dict:
    """The same benchmark on CUDA (and TensorRT when it loads), in a fresh interpreter; skipped without a GPU."""
    import mlflow

    from mlops_onnx.benchmark import metrics_from

    state_path = write_report(state, Path(GPU_STATE_FILE).name, state)
    out = Path(state["workdir"]) / "reports" / "benchmark_gpu.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlops_onnx.benchmark",
            "--model",
            spec.name,
            "--state",
            str(state_path),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        # The gate does not need GPU numbers: a broken GPU run is reported, not fatal to the night.
        report = {"status": "failed", "reason": f"GPU benchmark failed ({proc.returncode}): {proc.stderr[-400:]}"}
    else:
        report = json.loads(out.read_text())
    with mlflow_run(state):
        if report["status"] != "ok":
            mlflow.set_tag("bench_gpu_status", report["reason"][:500])
        else:
            mlflow.log_artifact(str(out), "reports")
            mlflow.log_metrics(metrics_from(report))
            mlflow.set_tag("bench_gpu_status", "ok")
    if report["status"] != "ok":
        raise StageSkipped(report["reason"])
    return {**state, "bench_gpu": "ok"}

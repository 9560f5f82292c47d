"""`benchmark_cpu`: latency of every passing ONNX model on the CPU provider, and of the fastest native path."""

from __future__ import annotations

from pathlib import Path

from mlops_onnx.settings import get_settings
from mlops_onnx.stages import mlflow_run, stage, write_report
from mlops_onnx.tracking import RunContext


@stage(reads=("checkpoint", "onnx_fp32", "passing_variants", "preprocessing", "evaluation_files"))
def benchmark_cpu(spec, ctx: RunContext, state: dict) -> dict:
    """Latency of every passing ONNX model on ONNX Runtime's CPU provider, and of the fastest native path."""
    import tempfile

    import mlflow

    from mlops_onnx.benchmarks.bundle import BenchConfig, bundle_from_state
    from mlops_onnx.benchmarks.nightly import nightly_report
    from mlops_onnx.benchmarks.timing import metrics_from

    settings = get_settings()
    with tempfile.TemporaryDirectory(prefix=f"bench-{spec.name}-") as tmp:
        bundle_from_state(spec, state, settings, Path(tmp))
        report = nightly_report(Path(tmp), ("cpu",), BenchConfig.nightly(settings))
    for row in report["rows"]:
        if row["variant"].startswith("onnx_") and row["execution_provider"] != "CPUExecutionProvider":
            raise RuntimeError(f"{row['variant']} ran on {row['execution_provider']}, not the CPU provider")
    path = write_report(state, "benchmark_cpu.json", report)
    native = report["native_choice"]["cpu"]["chosen"]
    with mlflow_run(state):
        mlflow.log_artifact(str(path), "reports")
        mlflow.log_metrics(metrics_from(report["rows"]))
        mlflow.set_tags(
            {
                "bench_cpu_model": report["machine"]["cpu_model"][:250],
                "bench_threads": str(settings.bench_threads),
                "bench_cpu_native_path": native,
            }
        )
    for row in report["rows"]:
        print(
            f"[{spec.name}] cpu {row['variant']:<18} b={row['batch']:<3} p50={row['p50_ms']:.3f}ms "
            f"p95={row['p95_ms']:.3f}ms p99={row['p99_ms']:.3f}ms {row['throughput_per_s']:.0f}/s",
            flush=True,
        )
    b1 = [r for r in report["rows"] if r["batch"] == 1]
    return {
        **state,
        "bench_cpu_b1_p95_ms": {r["variant"]: r["p95_ms"] for r in b1},
        "bench_cpu_b1_p50_ms": {r["variant"]: r["p50_ms"] for r in b1},
        "bench_cpu_native_path": native,
        "bench_cpu_report": str(path),
    }

"""`quantize`: the spec's ONNX variants (int8 static/dynamic, fp16) from the fp32 model."""

from __future__ import annotations

from pathlib import Path

from mlops_onnx.settings import get_settings
from mlops_onnx.stages import mlflow_run, run_snapshot, stage
from mlops_onnx.tracking import RunContext


@stage(reads=("onnx_fp32", "preprocessing", "evaluation_files"))
def quantize(spec, ctx: RunContext, state: dict) -> dict:
    """Build the spec's variants (int8 static/dynamic, fp16) from the fp32 model."""
    import mlflow

    from mlops_onnx.variants import VARIANTS, build_variants

    settings = get_settings()
    calibration = None
    if any(VARIANTS[v].needs_calibration for v in spec.variants):
        calibration = spec.calibration_data(run_snapshot(state, settings), settings, Path(state["workdir"]), rows=256)
    variants = build_variants(spec.variants, Path(state["onnx_fp32"]), Path(state["workdir"]), calibration)
    with mlflow_run(state):
        for name, info in variants.items():
            if info["status"] == "built":
                mlflow.log_metric(f"size_onnx_{name}_bytes", info["size_bytes"])
            mlflow.set_tag(
                f"variant_{name}_build",
                info["status"] if info["status"] == "built" else f"failed: {info['error']}"[:500],
            )
    return {**state, "variants": variants}

"""`prune`: retention after every night (a teardown): old unaliased versions, run folders, snapshots."""

from __future__ import annotations

from mlops_onnx import tracking
from mlops_onnx.monitoring import measured
from mlops_onnx.settings import get_settings
from mlops_onnx.tracking import RunContext


@measured
def prune(spec, ctx: RunContext) -> dict:
    """Retention, after every night (also a skipped or failed one): old unaliased versions, old run folders
    and snapshots nothing uses any more. Never what an alias or `last_good` points to."""
    from mlops_onnx.retention import prune as prune_model

    settings = get_settings()
    report = prune_model(spec, ctx, settings)
    print(f"[{spec.name}] retention: " + ", ".join(f"{k}={v}" for k, v in report.items()), flush=True)
    run_id = tracking.find_run(spec.name, ctx, settings)
    if run_id:  # the night's run (absent when ingest failed before creating it)
        from mlflow import MlflowClient

        for key, value in report.items():
            MlflowClient().log_metric(run_id, f"retention_{key}", value)
    return {"model": spec.name, "mlflow_run_id": run_id, **report}

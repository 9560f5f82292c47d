"""`train`: the native model, unless nothing changed since a run that got through the gate."""

from __future__ import annotations

from pathlib import Path

from mlops_onnx import tracking
from mlops_onnx.settings import get_settings
from mlops_onnx.stages import StageSkipped, mlflow_run, run_snapshot, stage
from mlops_onnx.tracking import RunContext


@stage()
def train(spec, ctx: RunContext, state: dict) -> dict:
    """Train the native model; per-epoch curves and test metrics go to MLflow.

    First the run's fingerprint (data, code, config): when an earlier run with the same fingerprint got
    through the gate, training again would repeat it, so this and every later stage is skipped with the
    reason (unless forced: the `force_retrain` DAG param or MLOPS_FORCE_RETRAIN=1; never on an `unknown`
    code version, which says so loudly)."""
    import mlflow
    from mlflow import MlflowClient

    from mlops_onnx import fingerprint
    from mlops_onnx.decisions import SKIPPED
    from mlops_onnx.models import VALIDATION_OUTPUTS
    from mlops_onnx.storage import size_bytes

    settings = get_settings()
    workdir = Path(state["workdir"])
    marks = fingerprint.fingerprint(spec, state["snapshot"], settings)
    forced = ctx.force_retrain or settings.force_retrain
    unknown_code = marks["code_version"] == fingerprint.UNKNOWN_CODE
    if unknown_code:
        print(
            f"[{spec.name}/{spec.architecture}] !!! MLOPS_CODE_VERSION is {fingerprint.UNKNOWN_CODE!r}: the code that "
            "trains is not identified, so this night trains even if nothing else changed. Build the image with "
            "GIT_COMMIT=$(git rev-parse HEAD), or without GIT_COMMIT (the package's source hash is used).",
            flush=True,
        )
    tracking.configure(settings)
    client = MlflowClient()
    tracking.set_run_tags(state["mlflow_run_id"], {**marks, "forced": str(forced).lower()})
    client.log_dict(state["mlflow_run_id"], spec.resolved_config(settings), "reports/resolved_config.json")
    earlier = (
        None
        if forced or unknown_code
        else fingerprint.earlier_decision(
            client, state["mlflow_experiment_id"], marks["fingerprint"], state["mlflow_run_id"]
        )
    )
    if earlier is not None:
        reason = fingerprint.unchanged_reason(earlier)
        tracking.set_run_tags(
            state["mlflow_run_id"],
            {
                "promotion_decision": SKIPPED,
                "promotion_reason": reason,
                "gate_status": "skipped",
                "gate_reason": reason,
                "unchanged_since_run": earlier.info.run_id,
            }
            # a candidate's run ends here: its status is final, not `running`
            | ({"candidate_status": "skipped unchanged"} if state.get("architecture") else {}),
        )
        if state.get("architecture"):
            client.set_terminated(state["mlflow_run_id"], "FINISHED")  # and the MLflow UI shows it ended
        raise StageSkipped(reason)

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics, step=epoch)
        # An ensemble's members log theirs under a prefix (`lstm_epoch_seconds`).
        seconds = sum(v for k, v in metrics.items() if k.endswith("epoch_seconds"))
        shown = "  ".join(f"{k}={v:.4f}" for k, v in metrics.items() if not k.endswith("epoch_seconds"))
        print(f"[{spec.name}/{spec.architecture}] epoch {epoch:>3}  {shown}  ({seconds:.1f}s)", flush=True)

    with mlflow_run(state):
        result = spec.train(run_snapshot(state, settings), workdir, settings, on_epoch)
        mlflow.log_params(result.params)
        mlflow.log_metrics(result.metrics)
        for artifact in result.artifacts:
            mlflow.log_artifact(str(artifact), "plots" if artifact.suffix == ".png" else "reports")
        for path in result.preprocessing:
            mlflow.log_artifact(str(path), "preprocessing")
        mlflow.log_metric("size_native_bytes", size_bytes(result.checkpoint))
        validation = result.validation.save(workdir / "reports" / VALIDATION_OUTPUTS) if result.validation else None
    return {
        **state,
        "checkpoint": str(result.checkpoint),
        "preprocessing": [str(p) for p in result.preprocessing],
        "evaluation_files": [str(p) for p in result.evaluation_files],
        "validation_outputs": str(validation) if validation else None,
        "metrics": {k: v for k, v in result.metrics.items() if k == spec.primary_metric or "macro" in k},
        "fingerprint": marks,
        "forced": forced,
    }

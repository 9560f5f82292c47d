"""`validate`: the dataset's Great Expectations suite and a drift report; `last_good` moves only on success."""

from __future__ import annotations

import logging
from pathlib import Path

from mlops_onnx import tracking
from mlops_onnx.settings import Settings, get_settings
from mlops_onnx.stages import mlflow_run, run_files, run_snapshot, snapshot_store, stage, write_report
from mlops_onnx.tracking import RunContext

log = logging.getLogger(__name__)


@stage()
def validate(spec, ctx: RunContext, state: dict) -> dict:
    """Run the dataset's Great Expectations suite; move `last_good` only if it passes."""
    import mlflow

    from mlops_onnx.validation import DataValidationError, check_sizes_against

    settings = get_settings()
    store = snapshot_store(settings)
    snapshot = run_snapshot(state, settings)
    store.verify(snapshot)
    report = spec.validate(snapshot, settings)
    baseline = store.last_good(spec.dataset.name)
    if baseline is not None and baseline.content_hash != snapshot.content_hash:
        check_sizes_against(report, snapshot.manifest, baseline.manifest, settings.max_file_growth)
    path = write_report(state, "validation.json", report.to_dict())
    quarantined = report.quarantined()
    with mlflow_run(state):
        mlflow.log_artifact(str(path), "reports")
        mlflow.log_text(report.to_html(), "reports/validation.html")
        mlflow.set_tag("validation_status", "passed" if report.success else "failed")
        if report.min_passing_files is not None:  # per-file verdicts: bad files are quarantined, not fatal
            mlflow.log_dict(quarantined, "reports/quarantine.json")
            mlflow.log_metrics(
                {
                    "data_files_passed": len(report.files) - len(quarantined),
                    "data_files_quarantined": len(quarantined),
                    "data_rows_archive": sum(f.rows or 0 for f in report.files.values()),
                }
            )
        else:
            for name, file_report in report.files.items():
                if file_report.rows is not None:
                    mlflow.log_metric(f"data_rows_{Path(name).stem.replace('-', '_')}", file_report.rows)
        if not report.success:
            mlflow.set_tags(
                {
                    "gate_status": "rejected",
                    "gate_reason": "data validation failed",
                    "validation_reason": report.message()[:5000],  # what the failure message says
                }
            )
    if not report.success:
        raise DataValidationError(report.message())
    _drift(spec, snapshot, baseline, state, settings)
    store.promote(snapshot, validation={"report": run_files(settings, ctx).publish(str(path)), "run_id": ctx.run_id})
    return {**state, "validation": "passed", "validation_report": str(path), "data_rows": report.summary}


def _drift(spec, snapshot, baseline, state: dict, settings: Settings) -> None:
    """The drift report of a new snapshot against `last_good` on the MLflow run: reported, never gated."""
    import tempfile

    import mlflow
    from mlflow import MlflowClient

    from mlops_onnx.champion import current_champion
    from mlops_onnx.drift import drift_report
    from mlops_onnx.models import load_spec
    from mlops_onnx.registry import version_preprocessing

    if baseline is None or baseline.content_hash == snapshot.content_hash:
        status = "no reference: first validated snapshot" if baseline is None else "unchanged: same as last_good"
        tracking.set_run_tags(state["mlflow_run_id"], {"drift_status": status})
        return
    workdir = Path(state["workdir"])
    try:
        with tempfile.TemporaryDirectory(prefix="drift-") as tmp:
            champion = current_champion(MlflowClient(), spec.name)
            preprocessing = version_preprocessing(MlflowClient(), champion, Path(tmp)) if champion else None
            # The columns as the champion's architecture sees them (e.g. its tokenizer's coverage).
            by = load_spec(spec.name, champion.tags.get("architecture")) if champion else spec
            reference = by.drift_frame(baseline, settings, workdir, preprocessing)
            current = by.drift_frame(snapshot, settings, workdir, preprocessing)
        if reference is None or current is None:
            tracking.set_run_tags(state["mlflow_run_id"], {"drift_status": f"no drift columns for {spec.name}"})
            return
        result = drift_report(reference, current, workdir / "reports")
    except Exception as exc:  # reported, not gated: a broken report never fails the night
        log.warning("drift report failed", exc_info=True)
        tracking.set_run_tags(state["mlflow_run_id"], {"drift_status": f"failed: {type(exc).__name__}: {exc}"})
        return
    with mlflow_run(state):
        mlflow.log_metrics({"drift_share": result["drift_share"], "drift_detected": result["drift_detected"]})
        mlflow.log_artifact(str(workdir / "reports" / "drift_report.html"), "reports")
        mlflow.log_artifact(str(workdir / "reports" / "drift_report.json"), "reports")
        mlflow.set_tags({"drift_status": "reported", "drift_reference": baseline.content_hash})
    print(
        f"[{spec.name}] drift vs last_good {baseline.content_hash[:12]}: {result['drift_share']:.0%} of "
        f"{len(result['columns'])} columns drifted (reported, not gated)",
        flush=True,
    )

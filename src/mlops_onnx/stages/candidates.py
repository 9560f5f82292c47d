"""`candidates`: tonight's candidate architectures of the task, each with its own MLflow run and folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlops_onnx import tracking
from mlops_onnx.settings import get_settings
from mlops_onnx.stages import stage
from mlops_onnx.tracking import RunContext

DATA_TAGS = ("data_hash", "data_source", "data_source_reason", "dataset", "profile", "stale_data", "drift_status")


@stage(reads=("validation_report",))
def candidates(spec, ctx: RunContext, state: dict) -> list[dict]:
    """One state per candidate that runs tonight (`Pipeline.active`: MLOPS_CANDIDATES_<TASK>, else the task's
    default set, on synthetic data its first and its baselines): the DAG maps the candidate stages over this
    list, so each candidate is its own task instances in the Airflow UI.

    Each candidate gets a run nested under the night's MLflow run (tag `architecture`) and a folder of the
    run's files of its own (`<run>/<architecture>/`, with a copy of the validation report its spec reads),
    so candidates trained side by side never write the same file."""
    from mlops_onnx.catalog import PIPELINES

    settings = get_settings()
    pipeline = PIPELINES[spec.name]
    architectures = pipeline.active(settings)
    tracking.configure(settings)
    tracking.set_run_tags(
        # The night's own run is not one architecture's: its `architecture` tag says so, `candidates` which ran.
        state["mlflow_run_id"],
        {"candidates": ",".join(architectures), "architecture": "night"},
    )
    # What the night's run says about the data, on every candidate's run too: each compares on its own in the UI.
    night = tracking.get_run_tags(state["mlflow_run_id"])
    about_data = {k: night[k] for k in DATA_TAGS if k in night}
    root = Path(state["workdir"])
    states = []
    for architecture in architectures:
        folder = root / architecture
        (folder / "reports").mkdir(parents=True, exist_ok=True)
        if state.get("validation_report"):
            shutil.copyfile(state["validation_report"], folder / "reports" / "validation.json")
        run_id = tracking.find_or_create_run(spec.name, ctx, settings, architecture, state["mlflow_run_id"])
        tracking.set_run_tags(
            run_id,
            {**about_data, "candidate_status": "running", "validation_status": state["validation"]},
        )
        states.append(
            {
                **state,
                "architecture": architecture,
                "night_run_id": state["mlflow_run_id"],
                "mlflow_run_id": run_id,
                "workdir": str(folder),
            }
        )
    defaults = [c.architecture for c in pipeline.candidates if c.by_default and not c.baseline]
    baselines = " and the baselines" if any(c.baseline for c in pipeline.candidates) else ""
    why = (
        f" (synthetic data: the first of {', '.join(defaults)}{baselines}; "
        f"MLOPS_CANDIDATES_{pipeline.task.upper()} for more)"
        if pipeline.first_only(settings) and len(defaults) > 1
        else ""
    )
    print(f"[{spec.name}] candidates tonight: {', '.join(architectures)}{why}", flush=True)
    return states

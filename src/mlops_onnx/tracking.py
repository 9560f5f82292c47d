"""MLflow conventions: one experiment per model, one MLflow run per Airflow DAG run.

Every task of a DAG run reopens the same MLflow run (found by its `airflow_run_id` tag), so the
run a registered version points to carries every headline metric of that night.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mlops_onnx.settings import Settings

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RunContext:
    """Who is running: the Airflow DAG run (or a manual run id when called outside Airflow)."""

    dag_id: str
    run_id: str
    try_number: int = 1
    logical_date: str | None = None  # ISO 8601; None for a run without one (or outside Airflow)

    @property
    def safe_run_id(self) -> str:
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in self.run_id)


@lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit the code runs from (with `-dirty` for uncommitted changes), or MLOPS_CODE_VERSION."""
    import os

    if os.environ.get("MLOPS_CODE_VERSION"):
        return os.environ["MLOPS_CODE_VERSION"]
    import shutil

    git = shutil.which("git")  # a full path: never whatever "git" a changed PATH finds later
    if git is None:
        return "unknown"
    try:
        commit = subprocess.run([git, "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run([git, "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def configure(settings: Settings) -> None:
    import mlflow

    settings.home.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)


def experiment_id(model: str, settings: Settings) -> str:
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(model)
    if experiment is not None:
        return experiment.experiment_id
    # With a local store, keep artifacts under MLOPS_HOME (MLflow's default is ./mlruns in the CWD);
    # a tracking server decides for itself.
    location = None
    if not settings.tracking_uri.startswith(("http://", "https://", "databricks")):
        location = (settings.artifacts_dir / model).as_uri()
    try:
        return client.create_experiment(model, artifact_location=location, tags={"model": model})
    except Exception:
        experiment = client.get_experiment_by_name(model)  # created by a concurrent task
        if experiment is None:
            raise
        return experiment.experiment_id


def find_or_create_run(model: str, ctx: RunContext, settings: Settings) -> str:
    """The MLflow run id of this DAG run, creating the run on first use."""
    from mlflow import MlflowClient

    configure(settings)
    client = MlflowClient()
    exp = experiment_id(model, settings)
    query = f"tags.airflow_dag_id = '{ctx.dag_id}' and tags.airflow_run_id = '{ctx.run_id}'"
    runs = client.search_runs([exp], filter_string=query, max_results=1, order_by=["attributes.start_time ASC"])
    if runs:
        return runs[0].info.run_id
    run = client.create_run(
        exp,
        run_name=f"{ctx.dag_id}__{ctx.safe_run_id}",
        tags={"airflow_dag_id": ctx.dag_id, "airflow_run_id": ctx.run_id, "model": model,
              "git_commit": code_version(), "mlflow.source.name": ctx.dag_id}
             | ({"airflow_logical_date": ctx.logical_date} if ctx.logical_date else {}),  # fmt: skip
    )
    return run.info.run_id

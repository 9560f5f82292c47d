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

from mlops_onnx import mlflow_auth
from mlops_onnx.settings import Settings, private_file, sqlite_file

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RunContext:
    """Who is running: the Airflow DAG run (or a manual run id when called outside Airflow)."""

    dag_id: str
    run_id: str
    try_number: int = 1
    logical_date: str | None = None  # ISO 8601; None for a run without one (or outside Airflow)
    force_retrain: bool = False  # the DAG run's `force_retrain` param: train even if nothing changed

    @property
    def safe_run_id(self) -> str:
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in self.run_id)


@lru_cache(maxsize=1)
def code_version() -> str:
    """What code trains: the git commit, plus `+src.<hash>` of the package source when the tree has
    uncommitted changes; `src.<hash>` alone outside a git checkout (an image built without .git);
    MLOPS_CODE_VERSION when set (e.g. an image tag). Part of every run's fingerprint."""
    import shutil

    from mlops_onnx.settings import get_settings

    if get_settings().code_version:
        return get_settings().code_version

    git = shutil.which("git")  # a full path: never whatever "git" a changed PATH finds later
    try:
        if git is None:
            raise OSError("git not found")
        commit = subprocess.run(
            [git, "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            [git, "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"src.{source_hash()[:12]}"
    return f"{commit}+src.{source_hash()[:12]}" if dirty else commit


def source_hash() -> str:
    """sha256 over the package's Python files (relative path and content): the same source, the same hash."""
    import hashlib

    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(f"{path.relative_to(package).as_posix()}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def configure(settings: Settings, account: str = mlflow_auth.PIPELINE) -> None:
    """Point MLflow at the tracking store and, for a server with authentication, log in as `account`
    (the pipeline's service account unless a read-only user is asked for: see `mlflow_auth`)."""
    import mlflow

    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (database := sqlite_file(settings.tracking_uri)) is not None:
        private_file(database)
        relocate_store(database, settings)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow_auth.log_in(settings, account)


# Where a SQLite MLflow store keeps absolute artifact locations (`file://` URIs).
STORED_LOCATIONS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)


def relocate_store(database: Path, settings: Settings) -> list[str]:
    """A home's own MLflow store records absolute `file://` artifact locations. In a copied or moved home they
    still name the original's `mlartifacts/`, so the copy would read and write the original's files: any such
    location (found from the experiments, whose locations are `<mlartifacts>/<model>`) is rewritten to this
    home's. Only for the store inside this home; returns the old locations it rewrote."""
    import sqlite3
    from contextlib import closing

    if database.parent.resolve() != settings.home.resolve() or database.stat().st_size == 0:
        return []
    new = settings.artifacts_dir.as_uri()
    with closing(sqlite3.connect(database, timeout=30)) as db, db:
        try:
            experiments = db.execute("select name, artifact_location from experiments").fetchall()
        except sqlite3.OperationalError:  # not an MLflow store yet
            return []
        olds = {
            location.removesuffix(f"/{name}")
            for name, location in experiments
            if location
            and location.startswith("file://")
            and location.removesuffix(f"/{name}").endswith("/mlartifacts")
        } - {new}
        for old in sorted(olds):
            for table, column in STORED_LOCATIONS:
                # nosec B608: the table and column names are this module's constants; every value is a parameter
                query = f"update {table} set {column} = ? || substr({column}, ?) where {column} like ? escape '!'"  # noqa: S608  # nosec B608
                db.execute(query, (new, len(old) + 1, _like_prefix(old) + "/%"))
            log.warning("MLflow store of %s: artifact locations moved from %s to %s", settings.home, old, new)
    return sorted(olds)


def _like_prefix(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


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


NIGHT, CANDIDATE = "night", "candidate"  # the `run_kind` tag: a DAG run's run, or one candidate's in it


def find_run(model: str, ctx: RunContext, settings: Settings, architecture: str | None = None) -> str | None:
    """The MLflow run id of this DAG run (with `architecture`: of that candidate's run, nested under it),
    or None before it was created."""
    from mlflow import MlflowClient

    configure(settings)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(model)
    if experiment is None:
        return None
    query = f"tags.airflow_dag_id = '{ctx.dag_id}' and tags.airflow_run_id = '{ctx.run_id}'"
    if architecture is None:
        query += f" and tags.run_kind = '{NIGHT}'"
    else:
        query += f" and tags.run_kind = '{CANDIDATE}' and tags.architecture = '{architecture}'"
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=query, max_results=1, order_by=["attributes.start_time ASC"]
    )
    return runs[0].info.run_id if runs else None


def find_or_create_run(
    model: str, ctx: RunContext, settings: Settings, architecture: str | None = None, parent_run_id: str | None = None
) -> str:
    """The MLflow run id of this DAG run, creating the run on first use. The night's run holds the data
    (snapshot, validation, drift) and the decision; each candidate architecture has its own run nested
    under it (training, ONNX, parity, benchmarks), tagged `architecture`."""
    from mlflow import MlflowClient

    existing = find_run(model, ctx, settings, architecture)
    if existing:
        return existing
    client = MlflowClient()
    exp = experiment_id(model, settings)
    name = f"{ctx.dag_id}__{ctx.safe_run_id}" + (f"__{architecture}" if architecture else "")
    tags = {
        "airflow_dag_id": ctx.dag_id,
        "airflow_run_id": ctx.run_id,
        "model": model,
        "git_commit": code_version(),
        "mlflow.source.name": ctx.dag_id,
        "run_kind": NIGHT if architecture is None else CANDIDATE,
    }
    if architecture is not None:
        tags |= {"architecture": architecture, "mlflow.parentRunId": parent_run_id}
    if ctx.logical_date:
        tags["airflow_logical_date"] = ctx.logical_date
    return client.create_run(exp, run_name=name, tags=tags).info.run_id


def newest_night(client, model: str):
    """The newest night's MLflow run of a model (its `run_kind` tag `night`), or None."""
    experiment = client.get_experiment_by_name(model)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.run_kind = '{NIGHT}'", order_by=["attributes.start_time DESC"], max_results=1
    )
    return runs[0] if runs else None


def night_candidates(client, night) -> list:
    """The candidate runs nested under a night's run (the same DAG run), in the order they were created."""
    tags = night.data.tags
    query = (
        f"tags.run_kind = '{CANDIDATE}' and tags.airflow_dag_id = '{tags.get('airflow_dag_id')}' "
        f"and tags.airflow_run_id = '{tags.get('airflow_run_id')}'"
    )
    return client.search_runs([night.info.experiment_id], query, order_by=["attributes.start_time ASC"])


def why_dropped_out(tags: dict) -> str:
    """Why a candidate did not get through its stages, from its run's tags (`candidate_status`, `failed_stage`,
    `failure_reason`, or the decision of a candidate skipped as unchanged)."""
    from mlops_onnx.decisions import SKIPPED

    if tags.get("promotion_decision") == SKIPPED:
        return tags.get("promotion_reason", "unchanged")
    if tags.get("candidate_status") == "failed":
        return f"failed in {tags.get('failed_stage', '?')}: {tags.get('failure_reason', '')[:300]}"
    return f"did not finish ({tags.get('candidate_status', 'no run')})"


def get_run_tags(run_id: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return dict(MlflowClient().get_run(run_id).data.tags)


def set_run_tags(run_id: str, tags: dict[str, object]) -> None:
    """Tags on a run without reopening it (a `with mlflow.start_run()` that a skip exits would mark it failed)."""
    from mlflow import MlflowClient
    from mlflow.entities import RunTag

    MlflowClient().log_batch(run_id, tags=[RunTag(key, str(value)[:5000]) for key, value in tags.items()])

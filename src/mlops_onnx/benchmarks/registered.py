"""`make bench`'s inputs: registered versions, read from the MLflow registry and the shared storage.

Every read of a registered version for a benchmark is one of the small functions here, so a change
in what a version carries (e.g. its serving files moving into the MLflow model folder) is a change
here only: which version (`versions_to_benchmark`), its ONNX files (`version_onnx_files`), its
preprocessing (`version_preprocessing`), and the native checkpoint and working files its DAG run
published to the shared storage (`version_run_files`). Works on any host that reaches MLflow and
the shared storage: nothing is read from a task's local disk.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from mlops_onnx.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """A model and the version `make bench` measures (None, with the reason, when there is none)."""

    model: str
    version: object | None  # mlflow ModelVersion
    alias: str | None = None
    reason: str = ""


def versions_to_benchmark(client, models: list[str]) -> list[Candidate]:
    """Each model's `champion`, else its newest registered version."""
    from mlflow.exceptions import MlflowException

    from mlops_onnx.registry import CHAMPION, current_champion

    candidates = []
    for model in models:
        champion = current_champion(client, model)
        if champion is not None:
            candidates.append(Candidate(model, champion, CHAMPION))
            continue
        try:
            versions = client.search_model_versions(f"name='{model}'")
        except MlflowException as exc:
            versions, why = [], f": {exc}"
        else:
            why = ""
        if versions:
            newest = max(versions, key=lambda v: int(v.version))
            candidates.append(Candidate(model, client.get_model_version(model, newest.version)))
        else:
            candidates.append(Candidate(model, None, reason=f"no registered version of {model}{why}: run `make demo`"))
    return candidates


def version_onnx_files(client, model: str, version, folder: Path) -> dict[str, Path]:
    """The version's ONNX files by variant (fp32 from the MLflow model, the variants that passed parity),
    each as `model_<variant>.onnx` in `folder`, with ONNX Runtime's optimised copy beside it when registered."""
    import mlflow

    from mlops_onnx.serving.artifacts import run_file

    folder.mkdir(parents=True, exist_ok=True)
    model_dir = Path(
        mlflow.artifacts.download_artifacts(f"models:/{model}/{version.version}", dst_path=str(folder / "mlflow"))
    )
    files = {"fp32": folder / "model_fp32.onnx"}
    logged = model_dir / "model.onnx"  # mlflow.onnx's file name; other ONNX files may sit beside it
    shutil.copy2(logged if logged.is_file() else next(model_dir.rglob("*.onnx")), files["fp32"])
    for artifact in client.list_artifacts(version.run_id, "variants"):
        name = Path(artifact.path).name
        if name.startswith("model_") and name.endswith(".onnx"):
            files[name.removeprefix("model_").removesuffix(".onnx")] = run_file(version, artifact.path, folder)
    for artifact in client.list_artifacts(version.run_id, "optimized"):
        variant = Path(artifact.path).name.removeprefix("model_").removesuffix(".opt.onnx")
        if variant in files:
            saved = run_file(version, artifact.path, folder / "optimized")
            shutil.copy2(saved, files[variant].with_suffix(".opt.onnx"))
    return files


def version_preprocessing(client, version, folder: Path) -> Path | None:
    """The version's preprocessing files (a tokenizer, a scaler) in a folder; None if it has none."""
    from mlops_onnx.registry import version_preprocessing as registered_preprocessing

    return registered_preprocessing(client, version, folder)


def version_run_files(settings: Settings, version, folder: Path) -> Path:
    """The files the version's DAG run published to the shared storage (the native checkpoint, what
    training wrote beside it), pulled into `folder`; its tags `airflow_dag_id`/`airflow_run_id` name the run.
    Returns the folder of the version's candidate in it."""
    from mlops_onnx.storage import RunFiles, Storage
    from mlops_onnx.tracking import RunContext

    tags = version.tags
    if not tags.get("airflow_dag_id") or not tags.get("airflow_run_id"):
        raise LookupError(f"version {version.version} has no airflow_dag_id/airflow_run_id tags")
    ctx = RunContext(dag_id=tags["airflow_dag_id"], run_id=tags["airflow_run_id"])
    files = RunFiles(local=folder, remote=Storage(settings.runs_url).child(ctx.dag_id, ctx.safe_run_id))
    if not files.pull():
        raise LookupError(f"no files of run {ctx.run_id} at {files.remote.url} (removed by retention?)")
    # A candidate's files are in its own folder of the run (`<run>/<architecture>/`); a version from before
    # candidates existed has them at the top.
    architecture = tags.get("architecture")
    return folder / architecture if architecture and (folder / architecture).is_dir() else folder


def version_bundle(settings: Settings, client, candidate: Candidate, folder: Path) -> dict:
    """Write the bundle of a registered version into `folder`: its ONNX files, its native checkpoint, and
    the test split of the data it was trained on (its snapshot), encoded with its own preprocessing."""
    from mlops_onnx.benchmarks.bundle import write_bundle
    from mlops_onnx.models import load_spec
    from mlops_onnx.stages import snapshot_store

    version = candidate.version
    spec = load_spec(candidate.model, version.tags.get("architecture"))
    downloads = folder.parent / f"{folder.name}.files"
    shutil.rmtree(downloads, ignore_errors=True)
    workdir = version_run_files(settings, version, downloads / "run")
    checkpoint = workdir / spec.checkpoint_name
    if not checkpoint.exists():  # a file, or a folder (an ensemble's members)
        raise LookupError(f"the run of version {version.version} published no {spec.checkpoint_name}")
    onnx_files = version_onnx_files(client, candidate.model, version, downloads / "onnx")
    preprocessing = version_preprocessing(client, version, downloads / "preprocessing")
    snapshot = snapshot_store(settings).get(spec.dataset.name, version.tags["data_hash"])
    rows = spec.evaluation_data(snapshot, settings, workdir, preprocessing)
    run = client.get_run(version.run_id)
    return write_bundle(
        spec,
        folder,
        settings,
        inputs=rows.inputs,
        targets=rows.targets,
        checkpoint=checkpoint,
        onnx_files=onnx_files,
        reference=True,
        meta={
            "registered_version": str(version.version),
            "alias": candidate.alias,
            "mlflow_run_id": version.run_id,
            "airflow_run_id": version.tags.get("airflow_run_id"),
            "data_hash": version.tags.get("data_hash"),
            "serving_variant": version.tags.get("serving_variant"),
            "pipeline_parity": {
                k.removeprefix("parity_").removesuffix("_passed"): bool(v)
                for k, v in run.data.metrics.items()
                if k.startswith("parity_") and k.endswith("_passed")
            },
        },
    )

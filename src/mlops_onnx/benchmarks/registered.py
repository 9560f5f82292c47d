"""`make bench`'s inputs: each model's registered version and the other candidates of its night, read from
the MLflow registry and tracking server and the shared storage.

Every read for a benchmark is one of the small functions here, so a change in what a version or a
candidate's run carries (e.g. its serving files moving into the MLflow model folder) is a change here
only: what to measure (`subjects_to_benchmark`), a registered version's ONNX files
(`version_onnx_files`) and preprocessing (`version_preprocessing`), an unregistered candidate's ONNX
files (`candidate_onnx_files`) and preprocessing (`candidate_preprocessing`), and the native checkpoint
and working files its DAG run published to the shared storage (`run_files_of`). Works on any host that
reaches MLflow and the shared storage: nothing is read from a task's local disk.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from mlops_onnx.parity import passed_parity
from mlops_onnx.settings import Settings

log = logging.getLogger(__name__)

EXPORTED = "size_onnx_fp32_bytes"  # the metric the `export` stage logs once the fp32 file is written and checked


@dataclass(frozen=True)
class Subject:
    """What `make bench` measures of a model: one candidate architecture from one MLflow run, with its
    registered version and alias when it has one. `reason` says why it is not measured (no run at all,
    or a candidate that did not get through export)."""

    model: str
    architecture: str | None
    run: object | None = None  # mlflow Run: the candidate's (or, before candidates, the night's)
    version: object | None = None  # mlflow ModelVersion, when this run was registered
    alias: str | None = None
    reason: str = ""

    @property
    def run_id(self) -> str | None:
        return self.run.info.run_id if self.run is not None else None

    @property
    def tags(self) -> dict:
        """What the version's tags (else the run's) say about it: its DAG run, data hash, architecture."""
        return dict(self.version.tags if self.version is not None else self.run.data.tags)

    @property
    def key(self) -> str:
        """`<model>/<architecture>`: what its rows, targets and report section are keyed by."""
        from mlops_onnx.benchmarks.report import subject_key

        return subject_key({"model": self.model, "architecture": self.architecture})

    @property
    def label(self) -> str:
        registered = f"version {self.version.version}" if self.version is not None else "not registered"
        return f"{self.key} ({registered})"

    def about(self) -> dict:
        """What its bundle's meta (and so its report entry) says of it: registered or not, and which run."""
        run_tags = self.run.data.tags if self.run is not None else {}
        tags = self.tags if self.run is not None else {}
        return {
            "registered_version": str(self.version.version) if self.version is not None else None,
            "alias": self.alias,
            "candidate_status": run_tags.get("candidate_status"),
            "mlflow_run_id": self.run_id,
            "night_run_id": run_tags.get("mlflow.parentRunId"),
            "airflow_run_id": tags.get("airflow_run_id"),
            "data_hash": tags.get("data_hash"),
            "serving_variant": self.version.tags.get("serving_variant") if self.version is not None else None,
        }


def registered_version(client, model: str) -> tuple[object | None, str | None, str]:
    """(version, alias, why none): the model's `champion`, else its newest registered version."""
    from mlflow.exceptions import MlflowException

    from mlops_onnx.champion import CHAMPION, current_champion

    champion = current_champion(client, model)
    if champion is not None:
        return champion, CHAMPION, ""
    try:
        versions = client.search_model_versions(f"name='{model}'")
    except MlflowException as exc:
        return None, None, f": {exc}"
    if not versions:
        return None, None, ""
    newest = max(versions, key=lambda v: int(v.version))
    return client.get_model_version(model, newest.version), None, ""


def subjects_to_benchmark(client, models: list[str]) -> list[Subject]:
    """For each model: every candidate of the night that produced its registered version (`champion`, else the
    newest version), or of its newest night when nothing is registered; the registered one says its version
    and alias. A candidate that did not get through export is listed with the reason from its run's tags."""
    from mlops_onnx import tracking

    subjects = []
    for model in models:
        version, alias, why = registered_version(client, model)
        if version is not None:
            registered_run = client.get_run(version.run_id)
            parent = registered_run.data.tags.get("mlflow.parentRunId")
            runs = tracking.night_candidates(client, client.get_run(parent)) if parent else []
            if version.run_id not in {r.info.run_id for r in runs}:
                runs.insert(0, registered_run)  # a version from before candidates: its run is the night's own
        else:
            night = tracking.newest_night(client, model)
            if night is None:
                reason = f"no registered version of {model} and no night run{why}: run `make demo`"
                subjects.append(Subject(model, None, reason=reason))
                continue
            runs = tracking.night_candidates(client, night)
        for run in runs:
            if version is not None and run.info.run_id == version.run_id:
                subjects.append(Subject(model, architecture_of(model, version.tags), run, version, alias))
            else:
                dropped = "" if EXPORTED in run.data.metrics else tracking.why_dropped_out(run.data.tags)
                subjects.append(Subject(model, architecture_of(model, run.data.tags), run, reason=dropped))
    return subjects


def architecture_of(model: str, tags: dict) -> str:
    """A version's or a run's `architecture` tag; one from before candidates has none and is of the task's
    first candidate."""
    from mlops_onnx.catalog import PIPELINES

    return tags.get("architecture") or PIPELINES[model].candidate().architecture


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


def candidate_onnx_files(run, workdir: Path) -> dict[str, Path]:
    """An unregistered candidate's ONNX files by variant: only a registered version's are MLflow artifacts,
    so these are the files its stages published to the run's folder (`model_<variant>.onnx`, the optimised
    `.opt.onnx` beside each): fp32 and the variants whose pipeline parity passed (`parity_<variant>_passed`)."""
    files = {"fp32": workdir / "model_fp32.onnx"}
    if not files["fp32"].is_file():
        raise LookupError(f"run {run.info.run_id} published no model_fp32.onnx in {workdir} (removed by retention?)")
    for name, passed in passed_parity(run.data.metrics).items():
        path = workdir / f"model_{name}.onnx"
        if name == "fp32" or not passed:
            continue
        if path.is_file():
            files[name] = path
        else:
            log.warning(
                "run %s: %s passed parity but %s is not in its files; not measured", run.info.run_id, name, path
            )
    return files


def version_preprocessing(client, version, folder: Path) -> Path | None:
    """The version's preprocessing files (a tokenizer, a scaler) in a folder; None if it has none."""
    from mlops_onnx.registry import version_preprocessing as registered_preprocessing

    return registered_preprocessing(client, version, folder)


def candidate_preprocessing(client, subject: Subject, folder: Path) -> Path | None:
    """An unregistered candidate's preprocessing files: what `train` logged under its run's `preprocessing/`."""
    from mlops_onnx.serving.artifacts import PREPROCESSING, run_file

    if not client.list_artifacts(subject.run_id, PREPROCESSING):
        return None
    return run_file(subject, PREPROCESSING, folder)


def run_files_of(settings: Settings, subject: Subject, folder: Path) -> Path:
    """The files the subject's DAG run published to the shared storage (the native checkpoint, what training
    wrote beside it, the ONNX files), pulled into `folder`: only the candidate's own folder of the run
    (`<run>/<architecture>/`), or the whole run for a version from before candidates, which has them at the top.
    Its tags `airflow_dag_id`/`airflow_run_id` name the run. Returns the folder of the files."""
    from mlops_onnx.storage import RunFiles, Storage
    from mlops_onnx.tracking import RunContext

    tags = subject.tags
    if not tags.get("airflow_dag_id") or not tags.get("airflow_run_id"):
        raise LookupError(f"{subject.label} has no airflow_dag_id/airflow_run_id tags")
    ctx = RunContext(dag_id=tags["airflow_dag_id"], run_id=tags["airflow_run_id"])
    files = RunFiles(local=folder, remote=Storage(settings.runs_url).child(ctx.dag_id, ctx.safe_run_id))
    architecture = tags.get("architecture")
    if architecture and files.pull([architecture]):
        return folder / architecture
    if not files.pull():
        raise LookupError(f"no files of run {ctx.run_id} at {files.remote.url} (removed by retention?)")
    return folder


def subject_bundle(settings: Settings, client, subject: Subject, folder: Path) -> dict:
    """Write the bundle of a subject into `folder`: its ONNX files, its native checkpoint, and the test split
    of the data it was trained on (its snapshot), encoded with its own preprocessing. A registered version's
    ONNX files and preprocessing come from its model in the registry, an unregistered candidate's from its run."""
    from mlops_onnx.benchmarks.bundle import write_bundle
    from mlops_onnx.models import load_spec
    from mlops_onnx.stages import snapshot_store

    version, tags = subject.version, subject.tags
    spec = load_spec(subject.model, subject.architecture)
    downloads = folder.parent / f"{folder.name}.files"
    shutil.rmtree(downloads, ignore_errors=True)
    workdir = run_files_of(settings, subject, downloads / "run")
    checkpoint = workdir / spec.checkpoint_name
    if not checkpoint.exists():  # a file, or a folder (an ensemble's members)
        raise LookupError(f"the run of {subject.label} published no {spec.checkpoint_name}")
    if version is not None:
        onnx_files = version_onnx_files(client, subject.model, version, downloads / "onnx")
        preprocessing = version_preprocessing(client, version, downloads / "preprocessing")
    else:
        onnx_files = candidate_onnx_files(subject.run, workdir)
        preprocessing = candidate_preprocessing(client, subject, downloads / "preprocessing")
    snapshot = snapshot_store(settings).get(spec.dataset.name, tags["data_hash"])
    rows = spec.evaluation_data(snapshot, settings, workdir, preprocessing)
    return write_bundle(
        spec,
        folder,
        settings,
        inputs=rows.inputs,
        targets=rows.targets,
        checkpoint=checkpoint,
        onnx_files=onnx_files,
        reference=True,
        meta=subject.about() | {"pipeline_parity": passed_parity(subject.run.data.metrics)},
    )

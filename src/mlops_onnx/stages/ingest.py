"""`ingest`: the dataset from the configured source into a new content-hashed snapshot."""

from __future__ import annotations

import logging
from pathlib import Path

from mlops_onnx import tracking
from mlops_onnx.settings import Settings, get_settings
from mlops_onnx.stages import mlflow_run, run_files, snapshot_store, stage
from mlops_onnx.tracking import RunContext

log = logging.getLogger(__name__)


@stage()
def ingest(spec, ctx: RunContext) -> dict:
    """Fetch the dataset from the configured source into a new content-hashed snapshot.

    If the source fails and MLOPS_ON_SOURCE_FAILURE=use_last_good, the run goes on with the last
    snapshot that passed validation, tagged `stale_data=true`; otherwise the task fails.
    """
    import mlflow

    from mlops_onnx.sources import SourceError

    settings = get_settings()
    log.warning(
        "DATA SOURCE: %s (%s) for %s", settings.data_source.upper(), settings.data_source_reason, spec.dataset.slug
    )
    store = snapshot_store(settings)
    stale_reason = None
    try:
        snapshot = _snapshot_from_source(spec.dataset, store, settings)
    except SourceError as exc:
        snapshot = store.last_good(spec.dataset.name) if settings.on_source_failure == "use_last_good" else None
        if snapshot is None:
            raise
        stale_reason = str(exc)
        log.warning("source failed (%s); continuing on the last good snapshot %s", exc, snapshot.content_hash[:12])
    workdir = run_files(settings, ctx).local
    run_id = tracking.find_or_create_run(spec.name, ctx, settings)
    state = {
        "model": spec.name,
        "dataset": spec.dataset.name,
        "snapshot": snapshot.content_hash,
        "snapshot_new": snapshot.created,
        "data_source": settings.data_source,
        "workdir": str(workdir),
        "mlflow_run_id": run_id,
        "mlflow_experiment_id": tracking.experiment_id(spec.name, settings),
    }
    with mlflow_run(state):
        mlflow.set_tags(
            {
                "data_source": settings.data_source,
                "data_source_reason": settings.data_source_reason,
                "data_hash": snapshot.content_hash,
                "dataset": spec.dataset.slug,
                "profile": settings.profile,
                "stale_data": str(stale_reason is not None).lower(),
                "snapshot_new": str(snapshot.created).lower(),
            }
        )
        if stale_reason:
            mlflow.set_tag("source_error", stale_reason[:500])
        mlflow.log_dict(snapshot.manifest, "reports/snapshot_manifest.json")
    log.info("snapshot %s: %d file(s) at %s", snapshot.content_hash[:12], len(snapshot.files), snapshot.path)
    return state


def _snapshot_from_source(dataset, store, settings: Settings):
    from mlops_onnx import sources

    with store.staging(dataset.name) as staging:
        details = sources.fetch(settings.data_source, dataset, staging, settings)
        for aux in dataset.auxiliary:
            details[f"aux_{aux.name}"] = _fetch_auxiliary(aux, staging / "aux" / aux.name, settings)
        return store.commit(dataset.name, staging, source=settings.data_source, details=details)


def _fetch_auxiliary(dataset, folder: Path, settings: Settings) -> dict:
    """A secondary dataset (reported, never gated): missing is a warning, not a failure."""
    import shutil

    from mlops_onnx.sources import SourceError, fetch

    folder.mkdir(parents=True)
    try:
        return fetch(settings.data_source, dataset, folder, settings)
    except SourceError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        log.warning("auxiliary dataset %s unavailable: %s", dataset.name, exc)
        return {"missing": str(exc)}

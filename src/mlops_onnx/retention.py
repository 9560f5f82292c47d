"""Retention: what a nightly pipeline keeps, so the registry and the storage stay bounded.

- Registry: versions without an alias beyond the newest MLOPS_KEEP_VERSIONS (default 10) are deleted;
  their MLflow runs stay (metrics, artifacts, reports), tagged `pruned_version`.
- Run folders in the shared storage (and in this machine's working folder) older than
  MLOPS_KEEP_RUNS_DAYS (default 30) are removed.
- Snapshots that are neither `last_good` nor the data of a kept version are removed once older than
  MLOPS_KEEP_RUNS_DAYS (a younger one may belong to a run still in flight).

Never removed: a version an alias points to, its run folder, its snapshot, and `last_good`.
"""

from __future__ import annotations

import logging
import shutil
import time

from mlops_onnx import tracking
from mlops_onnx.settings import Settings
from mlops_onnx.tracking import RunContext

log = logging.getLogger(__name__)


def prune(spec, ctx: RunContext, settings: Settings, now: float | None = None) -> dict[str, int]:
    from mlflow import MlflowClient

    from mlops_onnx.stages import snapshot_store
    from mlops_onnx.storage import Storage

    tracking.configure(settings)
    client = MlflowClient()
    kept, deleted = prune_versions(client, spec.name, settings.keep_versions)
    cutoff = (now or time.time()) - settings.keep_runs_days * 86400
    aliased_runs = {
        RunContext(ctx.dag_id, v.tags["airflow_run_id"]).safe_run_id
        for v in kept
        if v.aliases and v.tags.get("airflow_run_id")
    }
    protected = aliased_runs | {ctx.safe_run_id}
    runs = Storage(settings.runs_url).child(ctx.dag_id)
    removed_runs = 0
    for folder in runs.folders():
        changed = runs.modified(folder)
        if folder not in protected and (changed is None or changed < cutoff):
            runs.remove(folder)
            removed_runs += 1
    local_runs = settings.work_dir / ctx.dag_id
    for folder in local_runs.iterdir() if local_runs.is_dir() else []:
        if folder.is_dir() and folder.name not in protected and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)

    store = snapshot_store(settings)
    last_good = store.last_good_hash(spec.dataset.name)
    in_use = {v.tags.get("data_hash") for v in kept} | {last_good}
    removed_snapshots = 0
    for digest, manifest in store.published(spec.dataset.name).items():
        created = _epoch(manifest.get("created_at"))
        if digest not in in_use and created is not None and created < cutoff:
            store.delete(spec.dataset.name, digest)
            removed_snapshots += 1
    return {
        "versions_deleted": deleted,
        "versions_kept": len(kept),
        "run_folders_deleted": removed_runs,
        "snapshots_deleted": removed_snapshots,
    }


def prune_versions(client, name: str, keep: int) -> tuple[list, int]:
    """Delete versions without an alias beyond the newest `keep`; return the kept versions and how many went."""
    from mlflow.exceptions import MlflowException

    try:
        aliases = client.get_registered_model(name).aliases  # alias -> version
    except MlflowException:  # nothing registered yet
        return [], 0
    aliased = {str(v) for v in aliases.values()}
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version))
    kept, deleted, unaliased = [], 0, 0
    for version in versions:
        if str(version.version) in aliased:
            kept.append(client.get_model_version(name, version.version))  # search leaves `aliases` empty
            continue
        unaliased += 1
        if unaliased <= keep:
            kept.append(version)
            continue
        tracking.set_run_tags(version.run_id, {"pruned_version": str(version.version)})
        client.delete_model_version(name, version.version)
        log.info("retention: deleted %s version %s (no alias, beyond the newest %d)", name, version.version, keep)
        deleted += 1
    return kept, deleted


def _epoch(iso: str | None) -> float | None:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp() if iso else None

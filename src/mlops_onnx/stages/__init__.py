"""The nightly stages, one module per DAG task: `mlops_onnx.stages.<task>.<task>(spec, ctx, state) -> state`.

Airflow only schedules and retries them (see `dag_factory`, which imports each stage in its task);
a test, a notebook or the CLI can call them directly. `state` is the small JSON dict the tasks pass
along through XCom: storage URLs, hashes and headline metrics, never arrays.

No stage assumes the one before ran on the same machine: `@stage(reads=...)` downloads the run files
the stage reads (those the upstream state names under `reads`) from the shared storage into this
machine's working folder, hands the stage local paths, uploads what it wrote, and hands on storage
URLs, never a local path. It also logs the task's wall time and peak memory (`monitoring.measured`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from mlops_onnx import tracking
from mlops_onnx.monitoring import measured
from mlops_onnx.settings import Settings, get_settings
from mlops_onnx.tracking import RunContext

log = logging.getLogger(__name__)

EVERY_FILE = None  # `reads=EVERY_FILE`: the stage reads the whole run folder (the gate registers it)


class StageSkipped(RuntimeError):
    """The stage has nothing to do here (e.g. no GPU); the DAG marks the task skipped."""


class ParityError(RuntimeError):
    """ONNX fp32 does not reproduce the native model: nothing from this run may be registered."""


class NoCandidate(RuntimeError):
    """Every candidate of the night failed a stage: there is nothing to gate, and a retry cannot help."""


def run_files(settings: Settings, ctx: RunContext):
    """This DAG run's working folder on this machine and its folder in the shared storage."""
    from mlops_onnx.storage import RunFiles, Storage

    return RunFiles(
        local=settings.work_dir / ctx.dag_id / ctx.safe_run_id,
        remote=Storage(settings.runs_url).child(ctx.dag_id, ctx.safe_run_id),
    )


def stage(reads: Iterable[str] | None = ()) -> Callable[[Callable[..., dict]], Callable[..., dict]]:
    """Make `fn(spec, ctx, *upstream)` a stage on the shared storage: pull the files named by the upstream
    state's `reads` keys (`EVERY_FILE`: all of the run's files), turn the state's URLs into local paths,
    and on success push what the stage wrote and hand on URLs again. Wall time and peak memory are logged."""
    keys = None if reads is None else tuple(reads)

    def decorate(fn: Callable[..., dict]) -> Callable[..., dict]:
        @functools.wraps(fn)
        def on_shared_storage(spec, ctx: RunContext, *upstream: dict) -> dict:
            files = run_files(get_settings(), ctx)
            wanted = None if keys is None else _named_files(files, keys, upstream)
            pulled = files.pull(wanted)
            log.info("run files: %d pulled from %s into %s", len(pulled), files.remote.url, files.local)
            local = [files.localise(state) for state in upstream]
            scope = _own_folder(files, local)
            # A candidate's folder holds no file before it trains, so no pull makes it on this machine.
            (files.local / scope).mkdir(parents=True, exist_ok=True)
            try:
                result = fn(spec, ctx, *local)
            except StageSkipped:
                _push(files, scope)  # a skipped stage's report says why, for the gate to attach
                raise
            _push(files, scope)
            return files.publish(result)

        return measured(on_shared_storage)

    return decorate


def _named_files(files, keys: tuple[str, ...], upstream: tuple[dict, ...]) -> list[str]:
    """The run-relative names of the files the upstream state's `keys` point at (strings, lists, dicts)."""
    names: list[str] = []

    def collect(value) -> None:
        if isinstance(value, str) and value.startswith(files.remote.url + "/"):
            names.append(value[len(files.remote.url) + 1 :])
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list | tuple):
            for item in value:
                collect(item)

    for state in upstream:
        for key in keys:
            collect(state.get(key))
    return names


def _own_folder(files, upstream: list[dict]) -> str:
    """The folder of the run this stage writes in: a candidate's (its state's `workdir`), else the whole run."""
    for state in upstream:
        if state.get("architecture") and state.get("workdir"):
            return Path(state["workdir"]).relative_to(files.local).as_posix()
    return ""


def _push(files, scope: str = "") -> None:
    pushed = files.push(scope)
    log.info("run files: %d pushed to %s: %s", len(pushed), files.remote.url, ", ".join(pushed))


def snapshot_store(settings: Settings):
    from mlops_onnx.snapshots import SnapshotStore

    return SnapshotStore(settings.snapshots_dir, settings.work_dir / "snapshots")


def run_snapshot(state: dict, settings: Settings):
    """The snapshot this run works on."""
    return snapshot_store(settings).get(state["dataset"], state["snapshot"])


def write_report(state: dict, name: str, payload: dict) -> Path:
    """Write a report atomically: a crash mid-write leaves the previous report, never half a file."""
    from mlops_onnx.snapshots import write_json_atomic

    path = Path(state["workdir"]) / "reports" / name
    write_json_atomic(path, payload)
    return path


def mlflow_run(state: dict):
    """The DAG run's MLflow run, active."""
    import mlflow

    tracking.configure(get_settings())
    return mlflow.start_run(run_id=state["mlflow_run_id"])

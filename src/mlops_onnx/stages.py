"""The nightly stages as plain functions: `stage(model, ctx, state) -> state`.

Airflow only schedules and retries them (see `dag_factory`); a test, a notebook or the CLI can
call them directly. `state` is the small JSON dict the tasks pass along through XCom: storage
URLs, hashes and headline metrics, never arrays.

No stage assumes the one before ran on the same machine (`on_shared_storage`): it downloads the
DAG run's files from the shared storage into this machine's working folder, works on local
paths, uploads what it wrote, and hands on storage URLs, never a local path.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mlops_onnx import tracking
from mlops_onnx.monitoring import measured
from mlops_onnx.settings import Settings, get_settings
from mlops_onnx.tracking import RunContext

log = logging.getLogger(__name__)


class StageSkipped(RuntimeError):
    """The stage has nothing to do here (e.g. no GPU); the DAG marks the task skipped."""


class ParityError(RuntimeError):
    """ONNX fp32 does not reproduce the native model: nothing from this run may be registered."""


def _spec(model: str):
    from mlops_onnx.models import load_spec

    return load_spec(model)


def _store(settings: Settings):
    from mlops_onnx.snapshots import SnapshotStore

    return SnapshotStore(settings.snapshots_dir, settings.work_dir / "snapshots")


def run_files(settings: Settings, ctx: RunContext):
    """This DAG run's working folder on this machine and its folder in the shared storage."""
    from mlops_onnx.storage import RunFiles, Storage

    return RunFiles(
        local=settings.work_dir / ctx.dag_id / ctx.safe_run_id,
        remote=Storage(settings.runs_url).child(ctx.dag_id, ctx.safe_run_id),
    )


def on_shared_storage(stage: Callable[..., dict]) -> Callable[..., dict]:
    """Run a stage on local copies of the run's files: pull them from the shared storage, turn the upstream
    state's URLs into local paths, and on success push what the stage wrote and hand on URLs again."""

    @functools.wraps(stage)
    def wrapper(model: str, ctx: RunContext, *upstream: dict) -> dict:
        files = run_files(get_settings(), ctx)
        pulled = files.pull()
        log.info("run files: %d pulled from %s into %s", len(pulled), files.remote.url, files.local)
        try:
            result = stage(model, ctx, *(files.localise(state) for state in upstream))
        except StageSkipped:
            _push(files)  # a skipped stage's report says why, for the gate to attach
            raise
        _push(files)
        return files.publish(result)

    return wrapper


def _push(files) -> None:
    pushed = files.push()
    log.info("run files: %d pushed to %s: %s", len(pushed), files.remote.url, ", ".join(pushed))


def _snapshot(state: dict, settings: Settings):
    return _store(settings).get(state["dataset"], state["snapshot"])


def _write_report(state: dict, name: str, payload: dict) -> Path:
    """Write a report atomically: a crash mid-write leaves the previous report, never half a file."""
    from mlops_onnx.snapshots import write_json_atomic

    path = Path(state["workdir"]) / "reports" / name
    write_json_atomic(path, payload)
    return path


def _mlflow_run(state: dict):
    import mlflow

    tracking.configure(get_settings())
    return mlflow.start_run(run_id=state["mlflow_run_id"])


@measured
@on_shared_storage
def ingest(model: str, ctx: RunContext) -> dict:
    """Fetch the dataset from the configured source into a new content-hashed snapshot.

    If the source fails and MLOPS_ON_SOURCE_FAILURE=use_last_good, the run goes on with the last
    snapshot that passed validation, tagged `stale_data=true`; otherwise the task fails.
    """
    import mlflow

    from mlops_onnx.sources import SourceError

    settings = get_settings()
    spec = _spec(model)
    log.warning(
        "DATA SOURCE: %s (%s) for %s", settings.data_source.upper(), settings.data_source_reason, spec.dataset.slug
    )
    store = _store(settings)
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
    run_id = tracking.find_or_create_run(model, ctx, settings)
    state = {
        "model": model,
        "dataset": spec.dataset.name,
        "snapshot": snapshot.content_hash,
        "snapshot_new": snapshot.created,
        "data_source": settings.data_source,
        "workdir": str(workdir),
        "mlflow_run_id": run_id,
        "mlflow_experiment_id": tracking.experiment_id(model, settings),
    }
    with _mlflow_run(state):
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


@measured
@on_shared_storage
def validate(model: str, ctx: RunContext, state: dict) -> dict:
    """Run the dataset's Great Expectations suite; move `last_good` only if it passes."""
    import mlflow

    from mlops_onnx.validation import DataValidationError, check_sizes_against

    settings = get_settings()
    spec = _spec(model)
    store = _store(settings)
    snapshot = _snapshot(state, settings)
    store.verify(snapshot)
    report = spec.validate(snapshot, settings)
    baseline = store.last_good(spec.dataset.name)
    if baseline is not None and baseline.content_hash != snapshot.content_hash:
        check_sizes_against(report, snapshot.manifest, baseline.manifest, settings.max_file_growth)
    path = _write_report(state, "validation.json", report.to_dict())
    quarantined = report.quarantined()
    with _mlflow_run(state):
        mlflow.log_artifact(str(path), "reports")
        mlflow.log_text(report.to_html(), "reports/validation.html")
        mlflow.set_tag("validation_status", "passed" if report.success else "failed")
        if report.min_passing_files is not None:  # per-file verdicts: bad files are quarantined, not fatal
            mlflow.log_dict(quarantined, "reports/quarantine.json")
            mlflow.log_metrics(
                {"data_files_passed": len(report.files) - len(quarantined), "data_files_quarantined": len(quarantined)}
            )
        else:
            for name, file_report in report.files.items():
                if file_report.rows is not None:
                    mlflow.log_metric(f"data_rows_{Path(name).stem.replace('-', '_')}", file_report.rows)
        if not report.success:
            mlflow.set_tags({"gate_status": "rejected", "gate_reason": "data validation failed"})
    if not report.success:
        raise DataValidationError(report.message())
    _drift(spec, snapshot, baseline, state, settings)
    store.promote(snapshot, validation={"report": run_files(settings, ctx).publish(str(path)), "run_id": ctx.run_id})
    return {**state, "validation": "passed", "data_rows": report.summary}


def _drift(spec, snapshot, baseline, state: dict, settings: Settings) -> None:
    """The drift report of a new snapshot against `last_good` on the MLflow run: reported, never gated."""
    import tempfile

    import mlflow
    from mlflow import MlflowClient

    from mlops_onnx.drift import drift_report
    from mlops_onnx.registry import current_champion, version_preprocessing

    if baseline is None or baseline.content_hash == snapshot.content_hash:
        status = "no reference: first validated snapshot" if baseline is None else "unchanged: same as last_good"
        tracking.set_run_tags(state["mlflow_run_id"], {"drift_status": status})
        return
    workdir = Path(state["workdir"])
    try:
        with tempfile.TemporaryDirectory(prefix="drift-") as tmp:
            champion = current_champion(MlflowClient(), spec.name)
            preprocessing = version_preprocessing(MlflowClient(), champion, Path(tmp)) if champion else None
            reference = spec.drift_frame(baseline, settings, workdir, preprocessing)
            current = spec.drift_frame(snapshot, settings, workdir, preprocessing)
        if reference is None or current is None:
            tracking.set_run_tags(state["mlflow_run_id"], {"drift_status": f"no drift columns for {spec.name}"})
            return
        result = drift_report(reference, current, workdir / "reports")
    except Exception as exc:  # reported, not gated: a broken report never fails the night
        log.warning("drift report failed", exc_info=True)
        tracking.set_run_tags(state["mlflow_run_id"], {"drift_status": f"failed: {type(exc).__name__}: {exc}"})
        return
    with _mlflow_run(state):
        mlflow.log_metrics({"drift_share": result["drift_share"], "drift_detected": result["drift_detected"]})
        mlflow.log_artifact(str(workdir / "reports" / "drift_report.html"), "reports")
        mlflow.log_artifact(str(workdir / "reports" / "drift_report.json"), "reports")
        mlflow.set_tags({"drift_status": "reported", "drift_reference": baseline.content_hash})
    print(
        f"[{spec.name}] drift vs last_good {baseline.content_hash[:12]}: {result['drift_share']:.0%} of "
        f"{len(result['columns'])} columns drifted (reported, not gated)",
        flush=True,
    )


@measured
@on_shared_storage
def train(model: str, ctx: RunContext, state: dict) -> dict:
    """Train the native model; per-epoch curves and test metrics go to MLflow.

    First the run's fingerprint (data, code, config): when an earlier run with the same fingerprint got
    through the gate, training again would repeat it, so this and every later stage is skipped with the
    reason (unless forced: the `force_retrain` DAG param or MLOPS_FORCE_RETRAIN=1)."""
    import mlflow
    from mlflow import MlflowClient

    from mlops_onnx import fingerprint
    from mlops_onnx.decisions import SKIPPED

    settings = get_settings()
    spec = _spec(model)
    workdir = Path(state["workdir"])
    marks = fingerprint.fingerprint(spec, state["snapshot"], settings)
    forced = ctx.force_retrain or settings.force_retrain
    tracking.configure(settings)
    client = MlflowClient()
    tracking.set_run_tags(state["mlflow_run_id"], {**marks, "forced": str(forced).lower()})
    client.log_dict(state["mlflow_run_id"], spec.resolved_config(settings), "reports/resolved_config.json")
    earlier = (
        None
        if forced
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
            },
        )
        raise StageSkipped(reason)

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics, step=epoch)
        shown = "  ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "epoch_seconds")
        print(f"[{model}] epoch {epoch:>3}  {shown}  ({metrics.get('epoch_seconds', 0):.1f}s)", flush=True)

    with _mlflow_run(state):
        result = spec.train(_snapshot(state, settings), workdir, settings, on_epoch)
        mlflow.log_params(result.params)
        mlflow.log_metrics(result.metrics)
        for artifact in result.artifacts:
            mlflow.log_artifact(str(artifact), "plots" if artifact.suffix == ".png" else "reports")
        for path in result.preprocessing:
            mlflow.log_artifact(str(path), "preprocessing")
        mlflow.log_metric("size_native_bytes", result.checkpoint.stat().st_size)
    return {
        **state,
        "checkpoint": str(result.checkpoint),
        "preprocessing": [str(p) for p in result.preprocessing],
        "metrics": {k: v for k, v in result.metrics.items() if k == spec.primary_metric or "macro" in k},
        "fingerprint": marks,
        "forced": forced,
    }


@measured
@on_shared_storage
def export(model: str, ctx: RunContext, state: dict) -> dict:
    """Export to ONNX fp32, run the full checker and stamp provenance into the metadata."""
    import mlflow
    import onnx

    from mlops_onnx.runtime import optimize_offline
    from mlops_onnx.variants import graph_op_types

    spec = _spec(model)
    out = Path(state["workdir"]) / "model_fp32.onnx"
    started = time.perf_counter()
    spec.export_onnx(Path(state["checkpoint"]), out)
    proto = onnx.load(str(out))
    onnx.helper.set_model_props(
        proto,
        {
            "producer": "mlops_onnx",
            "model": model,
            "git_commit": tracking.code_version(),
            "data_hash": state["snapshot"],
            "airflow_dag_id": ctx.dag_id,
            "airflow_run_id": ctx.run_id,
        },
    )
    onnx.save(proto, str(out))
    onnx.checker.check_model(str(out), full_check=True)
    optimize_offline(out, out.with_suffix(".opt.onnx"))  # ONNX Runtime's graph, optimised once, not per load
    ops = sorted(graph_op_types(out))
    opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    with _mlflow_run(state):
        mlflow.log_params(
            {"onnx_opset": opset, "onnx_input": proto.graph.input[0].name, "onnx_output": proto.graph.output[0].name}
        )
        mlflow.log_metrics(
            {"size_onnx_fp32_bytes": out.stat().st_size, "export_seconds": time.perf_counter() - started}
        )
        mlflow.log_dict({"op_types": ops, "opset": opset}, "reports/onnx_graph.json")
    return {**state, "onnx_fp32": str(out), "onnx_ops": ops}


@measured
@on_shared_storage
def quantize(model: str, ctx: RunContext, state: dict) -> dict:
    """Build the spec's variants (int8 static/dynamic, fp16) from the fp32 model."""
    import mlflow

    from mlops_onnx.variants import VARIANTS, build_variants

    settings = get_settings()
    spec = _spec(model)
    calibration = None
    if any(VARIANTS[v].needs_calibration for v in spec.variants):
        calibration = spec.calibration_data(_snapshot(state, settings), settings, Path(state["workdir"]), rows=256)
    variants = build_variants(spec.variants, Path(state["onnx_fp32"]), Path(state["workdir"]), calibration)
    with _mlflow_run(state):
        for name, info in variants.items():
            if info["status"] == "built":
                mlflow.log_metric(f"size_onnx_{name}_bytes", info["size_bytes"])
            mlflow.set_tag(
                f"variant_{name}_build",
                info["status"] if info["status"] == "built" else f"failed: {info['error']}"[:500],
            )
    return {**state, "variants": variants}


@measured
@on_shared_storage
def parity(model: str, ctx: RunContext, state: dict) -> dict:
    """Compare native vs ONNX fp32 and every variant on the whole test split."""
    import mlflow

    from mlops_onnx.parity import VariantParity, compare
    from mlops_onnx.runtime import make_session, run_batched

    settings = get_settings()
    spec = _spec(model)
    rows = spec.evaluation_data(_snapshot(state, settings), settings, Path(state["workdir"]))
    inputs, targets = rows.inputs, rows.targets
    native = spec.native_predictors(Path(state["checkpoint"]), settings)["native_eager"]
    native_out = run_batched_native(native, inputs)
    native_quality = spec.quality(native_out, targets)
    native_labels = spec.labels(native_out)
    native_margin = spec.decision_margin(native_out)
    candidates = {"fp32": state["onnx_fp32"]} | {
        name: info["path"] for name, info in state["variants"].items() if info["status"] == "built"
    }
    results = {}
    for name, path in candidates.items():
        try:
            out = run_batched(make_session(path, "cpu", threads=0), inputs)  # 0: all cores; not a benchmark
        except Exception as exc:  # a model ONNX Runtime cannot load or run fails parity, with the reason
            results[name] = VariantParity.failed(name, f"could not run: {type(exc).__name__}: {exc}")
            continue
        results[name] = compare(
            name,
            native_out,
            out,
            native_labels,
            spec.labels(out),
            native_quality,
            spec.quality(out, targets),
            spec.parity_rules,
            native_margin,
        )
    for name, info in state["variants"].items():
        if info["status"] != "built":
            results[name] = VariantParity.failed(name, f"not built: {info.get('error')}")
    report = {
        "native_quality": native_quality,
        "quality_name": spec.parity_rules.quality_name,
        "rows": len(inputs),
        "rules": spec.parity_rules.__dict__,
        "variants": {n: r.to_dict() for n, r in results.items()},
    }
    path = _write_report(state, "parity.json", report)
    fp32 = results["fp32"]
    with _mlflow_run(state):
        mlflow.log_artifact(str(path), "reports")
        mlflow.log_metric("parity_rows", len(inputs))
        for name, r in results.items():
            mlflow.log_metric(f"parity_{name}_passed", float(r.passed))
            if np.isfinite(r.max_abs_diff):
                mlflow.log_metric(f"parity_{name}_max_abs_diff", r.max_abs_diff)
                mlflow.log_metric(f"parity_{name}_quality_drop", r.quality_drop)
            if r.agreement is not None:
                mlflow.log_metric(f"parity_{name}_agreement", r.agreement)
                mlflow.log_metric(f"parity_{name}_boundary_rows", r.boundary_rows)
            mlflow.set_tag(f"parity_{name}", "passed" if r.passed else "failed: " + "; ".join(r.reasons)[:480])
        mlflow.set_tag("parity_status", "passed" if fp32.passed else "failed")
        if not fp32.passed:
            reason = "fp32 parity failed: " + "; ".join(fp32.reasons)
            mlflow.set_tags({"gate_status": "rejected", "gate_reason": reason})
    for name, r in results.items():
        agreement = "n/a" if r.agreement is None else f"{r.agreement:.4%}"
        print(
            f"[{model}] parity {name:<13} {'PASS' if r.passed else 'FAIL'}  max_abs_diff={r.max_abs_diff:.3g}"
            f"  agreement={agreement}  {spec.parity_rules.quality_name}_drop={r.quality_drop:.4f}"
            + (f"  ({'; '.join(r.reasons)})" if r.reasons else ""),
            flush=True,
        )
    if not fp32.passed:
        raise ParityError(f"ONNX fp32 does not match the native model: {'; '.join(fp32.reasons)}")
    passing = {n: candidates[n] for n, r in results.items() if r.passed and n != "fp32"}
    return {
        **state,
        "parity": {n: r.passed for n, r in results.items()},
        "parity_fp32_max_abs_diff": fp32.max_abs_diff,
        "passing_variants": passing,
    }


def run_batched_native(predict, inputs: np.ndarray, batch: int = 512) -> np.ndarray:
    return np.concatenate([predict(inputs[i : i + batch]) for i in range(0, len(inputs), batch)])


@measured
@on_shared_storage
def benchmark_cpu(model: str, ctx: RunContext, state: dict) -> dict:
    """Latency of every passing ONNX model on ONNX Runtime's CPU provider, and of the fastest native path."""
    import tempfile

    import mlflow

    from mlops_onnx.benchmarks.bundle import BenchConfig, bundle_from_state
    from mlops_onnx.benchmarks.nightly import nightly_report
    from mlops_onnx.benchmarks.timing import metrics_from

    settings = get_settings()
    with tempfile.TemporaryDirectory(prefix=f"bench-{model}-") as tmp:
        bundle_from_state(_spec(model), state, settings, Path(tmp))
        report = nightly_report(Path(tmp), ("cpu",), BenchConfig.nightly(settings))
    for row in report["rows"]:
        if row["variant"].startswith("onnx_") and row["execution_provider"] != "CPUExecutionProvider":
            raise RuntimeError(f"{row['variant']} ran on {row['execution_provider']}, not the CPU provider")
    path = _write_report(state, "benchmark_cpu.json", report)
    native = report["native_choice"]["cpu"]["chosen"]
    with _mlflow_run(state):
        mlflow.log_artifact(str(path), "reports")
        mlflow.log_metrics(metrics_from(report["rows"]))
        mlflow.set_tags(
            {
                "bench_cpu_model": report["machine"]["cpu_model"][:250],
                "bench_threads": str(settings.bench_threads),
                "bench_cpu_native_path": native,
            }
        )
    for row in report["rows"]:
        print(
            f"[{model}] cpu {row['variant']:<18} b={row['batch']:<3} p50={row['p50_ms']:.3f}ms "
            f"p95={row['p95_ms']:.3f}ms p99={row['p99_ms']:.3f}ms {row['throughput_per_s']:.0f}/s",
            flush=True,
        )
    b1 = [r for r in report["rows"] if r["batch"] == 1]
    return {
        **state,
        "bench_cpu_b1_p95_ms": {r["variant"]: r["p95_ms"] for r in b1},
        "bench_cpu_b1_p50_ms": {r["variant"]: r["p50_ms"] for r in b1},
        "bench_cpu_native_path": native,
        "bench_cpu_report": str(path),
    }


@measured
@on_shared_storage
def benchmark_gpu(model: str, ctx: RunContext, state: dict) -> dict:
    """The same benchmark on CUDA (and TensorRT when it loads), in a fresh interpreter; skipped without a GPU."""
    import shutil
    import tempfile

    import mlflow

    from mlops_onnx.benchmarks.bundle import BenchConfig, bundle_from_state
    from mlops_onnx.benchmarks.nightly import gpu_report
    from mlops_onnx.benchmarks.timing import metrics_from

    settings = get_settings()
    out = Path(state["workdir"]) / "reports" / "benchmark_gpu.json"
    with tempfile.TemporaryDirectory(prefix=f"bench-gpu-{model}-") as tmp:
        bundle = Path(tmp) / "bundle"
        bundle_from_state(_spec(model), state, settings, bundle)
        report = gpu_report(bundle, BenchConfig.nightly(settings), Path(tmp) / "benchmark_gpu.json")
        if report["status"] == "ok":
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(tmp) / "benchmark_gpu.json", out)
    with _mlflow_run(state):
        if report["status"] != "ok":
            mlflow.set_tag("bench_gpu_status", report["reason"][:500])
        else:
            mlflow.log_artifact(str(out), "reports")
            mlflow.log_metrics(metrics_from(report["rows"]))
            mlflow.set_tag("bench_gpu_status", "ok")
    if report["status"] != "ok":
        raise StageSkipped(report["reason"])
    return {**state, "bench_gpu": "ok"}


@measured
@on_shared_storage
def gate_and_register(model: str, ctx: RunContext, state: dict) -> dict:
    """The absolute gate, then the champion's head-to-head on tonight's test rows, then the registry."""
    from mlops_onnx.registry import gate_and_register as register

    return register(_spec(model), ctx, state, get_settings())


@measured
def prune(model: str, ctx: RunContext) -> dict:
    """Retention, after every night (also a skipped or failed one): old unaliased versions, old run folders
    and snapshots nothing uses any more. Never what an alias or `last_good` points to."""
    from mlops_onnx.retention import prune as prune_model

    settings = get_settings()
    report = prune_model(_spec(model), ctx, settings)
    print(f"[{model}] retention: " + ", ".join(f"{k}={v}" for k, v in report.items()), flush=True)
    run_id = tracking.find_run(model, ctx, settings)
    if run_id:  # the night's run (absent when ingest failed before creating it)
        from mlflow import MlflowClient

        for key, value in report.items():
            MlflowClient().log_metric(run_id, f"retention_{key}", value)
    return {"model": model, "mlflow_run_id": run_id, **report}

"""The gate and the MLflow Model Registry: register only what passed, move `champion` only upward.

A version carries the ONNX fp32 model (mlflow.onnx flavor, signature, input example), the
variants that passed parity, the reports, and tags that trace it to its data hash, code version
and Airflow run. Registration is idempotent per Airflow run: a retried or re-run task finds the
version it created before instead of adding another.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from mlops_onnx import tracking
from mlops_onnx.settings import Settings
from mlops_onnx.tracking import RunContext

log = logging.getLogger(__name__)
CHAMPION, CHALLENGER = "champion", "challenger"


def gate_reasons(spec, state: dict, settings: Settings) -> list[str]:
    """Why this run may not register; empty when it may."""
    reasons = []
    if state.get("validation") != "passed":
        reasons.append("data validation did not pass")
    if not state.get("parity", {}).get("fp32"):
        reasons.append("ONNX fp32 parity did not pass")
    score = state.get("metrics", {}).get(spec.primary_metric)
    threshold = spec.gate_min(settings)
    if score is None:
        reasons.append(f"{spec.primary_metric} missing")
    elif spec.higher_is_better and score < threshold:
        reasons.append(f"{spec.primary_metric} {score:.4f} < threshold {threshold:.4f}")
    elif not spec.higher_is_better and score > threshold:
        reasons.append(f"{spec.primary_metric} {score:.4f} > threshold {threshold:.4f}")
    return reasons


SERVING_MARGIN = 0.9  # a variant serves only if at most 90 % of fp32's latency, at p50 and at p95


def serving_variant(state: dict) -> str:
    """fp32, unless a variant that passed parity is clearly faster on the CPU at batch 1: p50 and p95
    both at most SERVING_MARGIN of fp32's; the fastest such variant by p50. A variant within noise of
    fp32 does not serve: it would cost accuracy for nothing, and could be slower on the next run."""
    p95 = state.get("bench_cpu_b1_p95_ms", {})
    p50 = state.get("bench_cpu_b1_p50_ms", p95)
    base50, base95 = p50.get("onnx_fp32"), p95.get("onnx_fp32")
    if base50 is None or base95 is None:
        return "fp32"
    faster = {
        name: p50[f"onnx_{name}"] for name in state.get("passing_variants", {})
        if p50.get(f"onnx_{name}", base50) <= SERVING_MARGIN * base50
        and p95.get(f"onnx_{name}", base95) <= SERVING_MARGIN * base95
    }  # fmt: skip
    return min(faster, key=faster.get) if faster else "fp32"


def is_better(spec, new: float, old: float) -> bool:
    return new > old if spec.higher_is_better else new < old


def _version_score(spec, version) -> float | None:
    raw = version.tags.get(spec.primary_metric)
    return float(raw) if raw is not None else None


def _existing_version(client, name: str, run_id: str):
    versions = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    return versions[0] if versions else None


def _log_model(spec, state: dict) -> str:
    """Log the fp32 ONNX model, the passing variants and the reports into the DAG run; return the model URI."""
    import mlflow
    import numpy as np
    import onnx
    from mlflow.models import infer_signature

    from mlops_onnx.runtime import make_session

    fp32 = Path(state["onnx_fp32"])
    session = make_session(fp32)
    example_input = _input_example(session)
    example_output = session.run(None, {session.get_inputs()[0].name: example_input})[0]
    signature = infer_signature({spec.onnx_input_name: example_input},
                                {session.get_outputs()[0].name: np.asarray(example_output)})  # fmt: skip
    info = mlflow.onnx.log_model(
        onnx.load(str(fp32)), name="model", signature=signature,
        input_example={spec.onnx_input_name: example_input},
        onnx_execution_providers=["CPUExecutionProvider"], save_as_external_data=False,
        pip_requirements=[f"onnx=={metadata.version('onnx')}",
                          f"onnxruntime-gpu=={metadata.version('onnxruntime-gpu')}"],
    )  # fmt: skip
    for path in state.get("passing_variants", {}).values():
        mlflow.log_artifact(path, "variants")
    for path in [fp32, *map(Path, state.get("passing_variants", {}).values())]:
        if path.with_suffix(".opt.onnx").is_file():  # ONNX Runtime's optimised graph, loaded by serving
            mlflow.log_artifact(str(path.with_suffix(".opt.onnx")), "optimized")
    for path in state.get("preprocessing", []):
        mlflow.log_artifact(path, "model/preprocessing")
    reports = Path(state["workdir"]) / "reports"
    for report in sorted(reports.glob("*.json")):
        if report.name != "gpu_benchmark_input.json":
            mlflow.log_artifact(str(report), "reports")
    return info.model_uri


def _input_example(session):
    import numpy as np

    from mlops_onnx.runtime import input_dtype

    shape = [1 if not isinstance(d, int) else d for d in session.get_inputs()[0].shape]
    return np.zeros(shape, dtype=input_dtype(session))


@contextlib.contextmanager
def registry_lock(model: str, settings: Settings) -> Iterator[None]:
    """Serialise check-register-alias for one model, so two concurrent runs cannot both register
    for the same Airflow run or both read the old champion and move the alias last-writer-wins.
    (A file lock: it covers every process sharing MLOPS_HOME.)"""
    path = settings.home / "locks" / f"registry-{model}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def gate_and_register(spec, ctx: RunContext, state: dict, settings: Settings) -> dict:
    with registry_lock(spec.name, settings):
        return _gate_and_register(spec, ctx, state, settings)


def _gate_and_register(spec, ctx: RunContext, state: dict, settings: Settings) -> dict:
    import mlflow
    from mlflow import MlflowClient

    tracking.configure(settings)
    client = MlflowClient()
    run_id = state["mlflow_run_id"]
    score = state.get("metrics", {}).get(spec.primary_metric)

    existing = _existing_version(client, spec.name, run_id)
    if existing is not None:
        log.warning("run %s already registered %s version %s; not registering again",
                    ctx.run_id, spec.name, existing.version)  # fmt: skip
        aliases = list(existing.aliases)
        if not aliases:  # an earlier try registered, then failed before the alias: finish its work
            aliases = [move_aliases(spec, client, str(existing.version), float(existing.tags[spec.primary_metric]))]
            client.set_tag(run_id, "registered_alias", aliases[0])
            client.set_tag(run_id, "gate_status", "registered")
        return {**state, "registered": True, "version": str(existing.version), "aliases": aliases,
                "gate": "registered"}  # fmt: skip

    reasons = gate_reasons(spec, state, settings)
    with mlflow.start_run(run_id=run_id):
        if reasons:
            reason = "; ".join(reasons)
            mlflow.set_tags({"gate_status": "rejected", "gate_reason": reason})
            print(f"[{spec.name}] GATE REJECTED: {reason}; nothing registered", flush=True)
            return {**state, "registered": False, "gate": "rejected", "gate_reason": reason}
        variant = serving_variant(state)
        model_uri = _log_model(spec, state)
        tags = {
            "data_hash": state["snapshot"], "data_source": state["data_source"],
            "git_commit": tracking.code_version(), "airflow_dag_id": ctx.dag_id, "airflow_run_id": ctx.run_id,
            "parity_status": "passed", "serving_variant": variant, spec.primary_metric: f"{score:.6f}",
            "variants_passed": ",".join(sorted(state.get("passing_variants", {}))) or "none",
        }  # fmt: skip
        version = mlflow.register_model(model_uri, spec.name, tags=tags)
        alias = move_aliases(spec, client, version.version, score)
        mlflow.set_tags({"gate_status": "registered", "registered_model": spec.name,
                         "registered_version": str(version.version), "registered_alias": alias,
                         "serving_variant": variant})  # fmt: skip
    print(f"[{spec.name}] registered version {version.version} as @{alias} "
          f"({spec.primary_metric}={score:.4f}, serving variant {variant})", flush=True)  # fmt: skip
    return {**state, "registered": True, "version": str(version.version), "aliases": [alias], "gate": "registered",
            "serving_variant": variant}  # fmt: skip


def move_aliases(spec, client, version: str, score: float) -> str:
    """`champion` moves to `version` only if it beats the current champion; else it is the `challenger`."""
    from mlflow.exceptions import MlflowException

    try:
        champion = client.get_model_version_by_alias(spec.name, CHAMPION)
    except MlflowException:
        champion = None
    champion_score = _version_score(spec, champion) if champion is not None else None
    if champion is None or champion_score is None or is_better(spec, score, champion_score):
        client.set_registered_model_alias(spec.name, CHAMPION, version)
        return CHAMPION
    client.set_registered_model_alias(spec.name, CHALLENGER, version)
    return CHALLENGER

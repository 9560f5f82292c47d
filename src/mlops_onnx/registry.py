"""The gate and the MLflow Model Registry: register only what passed, move `champion` only on a paired win.

A run that passes the absolute gate (validation, fp32 parity, the primary metric's threshold) meets
the current champion head to head on tonight's test rows (`decisions`); it is registered either way,
as `champion` when it won (or there was none) and as `challenger` otherwise, and its run and version
say why in one sentence. A version's model directory is self-contained: the ONNX fp32 model (mlflow.onnx
flavor, signature, input example), its preprocessing files and the serving variant's ONNX file
(`serving.artifacts`); its run keeps the variants that passed parity and the reports; tags trace it to its fingerprint
(data hash, code version, config hash) and Airflow run. Registration is idempotent per Airflow run
and per logical date (unless forced): a retried or re-run task, or the whole night re-run under a
new Airflow run id, finds the version it created before instead of adding another.
"""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path

from mlops_onnx import tracking
from mlops_onnx.champion import (
    CHALLENGER,
    CHAMPION,
    compare_and_set_champion,
    current_champion,
    record_decision,
    record_displaced,
    same_version,
)
from mlops_onnx.decisions import (
    AWAITING_APPROVAL,
    FIRST_CHAMPION,
    KEPT,
    PROMOTED,
    REJECTED,
    REJECTED_IN_SERVER,
    Decision,
    needs_approval,
)
from mlops_onnx.serving.trial import server_trial
from mlops_onnx.settings import Settings
from mlops_onnx.tracking import RunContext

log = logging.getLogger(__name__)


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
        name: p50[f"onnx_{name}"]
        for name in state.get("passing_variants", {})
        if p50.get(f"onnx_{name}", base50) <= SERVING_MARGIN * base50
        and p95.get(f"onnx_{name}", base95) <= SERVING_MARGIN * base95
    }
    return min(faster, key=faster.get) if faster else "fp32"


def _existing_version(client, name: str, run_id: str, ctx: RunContext, forced: bool = False):
    """The version this DAG run registered before: by its MLflow run (a retried or cleared task), or by
    its logical date (the whole run re-run for the same night gets a new Airflow run id; a forced
    retrain asked for a new version, so it does not count)."""
    versions = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if not versions and ctx.logical_date and not forced:
        versions = client.search_model_versions(
            f"name='{name}' and tags.airflow_dag_id='{ctx.dag_id}' and tags.airflow_logical_date='{ctx.logical_date}'"
        )
    # search_model_versions leaves `aliases` empty; get_model_version fills it.
    return client.get_model_version(name, versions[0].version) if versions else None


def _log_model(spec, state: dict, variant: str) -> str:
    """Log the fp32 ONNX model with its preprocessing files and the serving variant (`variant`) in its model
    directory, and the passing variants and the reports into the DAG run; return the model URI."""
    import mlflow
    import numpy as np
    import onnx
    from mlflow.models import infer_signature

    from mlops_onnx.runtime import make_session
    from mlops_onnx.serving.artifacts import attach_serving_files

    fp32 = Path(state["onnx_fp32"])
    session = make_session(fp32)
    example_input = _input_example(session)
    example_output = session.run(None, {session.get_inputs()[0].name: example_input})[0]
    signature = infer_signature(
        {spec.onnx_input_name: example_input}, {session.get_outputs()[0].name: np.asarray(example_output)}
    )
    info = mlflow.onnx.log_model(
        onnx.load(str(fp32)),
        name="model",
        signature=signature,
        input_example={spec.onnx_input_name: example_input},
        onnx_execution_providers=["CPUExecutionProvider"],
        save_as_external_data=False,
        pip_requirements=[
            f"onnx=={metadata.version('onnx')}",
            f"onnxruntime-gpu=={metadata.version('onnxruntime-gpu')}",
        ],
    )
    serving = Path(state["onnx_fp32"] if variant == "fp32" else state["passing_variants"][variant])
    if serving.with_suffix(".opt.onnx").is_file():  # ONNX Runtime's optimised graph, saved once at export
        serving = serving.with_suffix(".opt.onnx")
    preprocessing = [Path(p) for p in state.get("preprocessing", [])]
    metrics = mlflow.get_run(state["mlflow_run_id"]).data.metrics
    attach_serving_files(info.model_id, variant, serving, preprocessing, metrics)
    for path in state.get("passing_variants", {}).values():
        mlflow.log_artifact(path, "variants")
    for path in [fp32, *map(Path, state.get("passing_variants", {}).values())]:
        if path.with_suffix(".opt.onnx").is_file():
            mlflow.log_artifact(str(path.with_suffix(".opt.onnx")), "optimized")
    for path in preprocessing:  # also in the run, where versions registered before kept them
        mlflow.log_artifact(str(path), "model/preprocessing")
    reports = Path(state["workdir"]) / "reports"
    for report in sorted(reports.glob("*.json")):
        mlflow.log_artifact(str(report), "reports")
    return info.model_uri


def _input_example(session):
    import numpy as np

    from mlops_onnx.runtime import input_dtype

    shape = [1 if not isinstance(d, int) else d for d in session.get_inputs()[0].shape]
    return np.zeros(shape, dtype=input_dtype(session))


def gate_and_register(spec, ctx: RunContext, state: dict, settings: Settings) -> dict:
    """Gate, head-to-head, register, alias. Airflow runs one of these per model at a time (the model's
    one-slot registry pool, `max_active_runs=1`); the champion is read again just before the alias
    moves, and a champion that changed meanwhile is compared again (compare-and-set)."""
    from mlflow import MlflowClient

    tracking.configure(settings)
    client = MlflowClient()
    existing = _existing_version(client, spec.name, state["mlflow_run_id"], ctx, state.get("forced", False))
    if existing is not None:
        return _finish_existing(spec, client, existing, ctx, state, settings)

    reasons = gate_reasons(spec, state, settings)
    if reasons:
        reason = "Rejected by the gate: " + "; ".join(reasons) + "."
        tracking.set_run_tags(
            state["mlflow_run_id"],
            {
                "gate_status": "rejected",
                "gate_reason": "; ".join(reasons),
                "promotion_decision": REJECTED,
                "promotion_reason": reason,
            },
        )
        print(f"[{spec.name}] GATE REJECTED: {reason} Nothing registered.", flush=True)
        return {
            **state,
            "registered": False,
            "gate": "rejected",
            "gate_reason": "; ".join(reasons),
            "promotion_decision": REJECTED,
        }

    champion = current_champion(client, spec.name)
    decided = _decide(spec, client, champion, state, settings)
    version = _register(spec, client, ctx, state, decided)
    decided, alias = _try_then_move(spec, client, version, champion, decided, state, settings)
    print(f"[{spec.name}] registered version {version} as @{alias}: {decided.reason}", flush=True)
    return {
        **state,
        "registered": True,
        "version": version,
        "aliases": [alias] if alias else [],
        "gate": "registered",
        "serving_variant": client.get_model_version(spec.name, version).tags.get("serving_variant"),
        "promotion_decision": decided.outcome,
    }


def _try_then_move(spec, client, version: str, champion, decided: Decision, state: dict, settings: Settings):
    """A version that would take `champion` (or wait for approval: a human approves only what serves) is tried
    in its server first (`serving.trial`); refused there, it keeps no alias. Otherwise the alias moves."""
    tried = decided.takes_champion or decided.outcome == AWAITING_APPROVAL
    trial = server_trial(spec, version, state, settings) if tried else None
    if trial is None or trial.passed:
        return _move_alias(spec, client, version, champion, decided, state, settings)
    refused = Decision(REJECTED_IN_SERVER, f"Rejected in the server: {trial.reason}.", decided.compared)
    record_decision(spec.name, client, version, state["mlflow_run_id"], refused, None)
    return refused, None


def _decide(spec, client, champion, state: dict, settings: Settings, exclude: str | None = None) -> Decision:
    """Tonight's candidate against `champion` on tonight's test rows; `awaiting_approval` where
    MLOPS_PROMOTION_APPROVAL asks a human (`decisions.needs_approval`)."""
    decided = _decide_by_test(spec, client, champion, state, settings, exclude)
    if not needs_approval(settings.promotion_approval, decided):
        return decided
    # what the test says, without its verdict ("Champion kept: ", "Promoted: "), which the human now gives
    reason = decided.reason
    why = reason.split(": ", 1)[1] if decided.outcome in (KEPT, PROMOTED) else reason[0].lower() + reason[1:]
    mode = f"MLOPS_PROMOTION_APPROVAL={settings.promotion_approval}"
    return Decision(AWAITING_APPROVAL, f"Awaiting approval in Airflow ({mode}): {why}", decided.compared)


def _decide_by_test(spec, client, champion, state: dict, settings: Settings, exclude: str | None = None) -> Decision:
    from mlops_onnx.decisions import decide

    if champion is None or str(champion.version) == exclude:
        score = state["metrics"][spec.primary_metric]
        return Decision(
            FIRST_CHAMPION,
            f"First champion: no champion yet and the gate passed ({spec.primary_metric} "
            f"{score:.4f}, threshold {spec.gate_min(settings):.4f}).",
        )
    try:
        result = head_to_head(spec, client, champion, state, settings)
    except Exception as exc:  # an incomparable champion is never replaced automatically
        log.warning("head-to-head against %s v%s failed", spec.name, champion.version, exc_info=True)
        return Decision(
            KEPT,
            f"Champion kept: champion v{champion.version} could not be run on tonight's test rows "
            f"({type(exc).__name__}: {str(exc)[:300]}); move `champion` by hand if this one is better.",
        )
    _log_head_to_head(spec, state, result, str(champion.version))
    return decide(result, settings.promotion_alpha, str(champion.version))


def head_to_head(spec, client, champion, state: dict, settings: Settings):
    """Tonight's fp32 model and the champion's, each with its own architecture's inputs and preprocessing, on
    tonight's test rows (every candidate of a task emits the same outputs: logits, a probability, a return)."""
    import tempfile

    from mlops_onnx.models import load_spec
    from mlops_onnx.runtime import input_dtype, make_session, run_batched
    from mlops_onnx.serving.artifacts import flavor_onnx
    from mlops_onnx.snapshots import SnapshotStore

    snapshot = SnapshotStore(settings.snapshots_dir).get(spec.dataset.name, state["snapshot"])
    workdir = Path(state["workdir"])
    with tempfile.TemporaryDirectory(prefix=f"champion-{spec.name}-v{champion.version}-") as tmp:
        folder = Path(tmp)
        preprocessing = version_preprocessing(client, champion, folder)
        model_dir = folder / "model"
        if state.get("preprocessing") and preprocessing is None:
            raise ValueError(f"champion v{champion.version} has no preprocessing files (preprocessing/)")
        rows = spec.evaluation_data(snapshot, settings, workdir)
        # The champion's inputs as its own architecture reads them (a version from before candidates existed
        # is of the task's default architecture), encoded with its own preprocessing files, if any.
        champion_spec = load_spec(spec.name, champion.tags.get("architecture"))
        champion_rows = (
            rows
            if preprocessing is None and champion_spec is spec
            else champion_spec.evaluation_data(snapshot, settings, workdir, preprocessing)
        )
        if list(rows.ids) != list(champion_rows.ids):
            raise ValueError("the champion's inputs were built for other rows than tonight's test split")
        outputs = {}
        for name, path, inputs in (
            ("candidate", state["onnx_fp32"], rows.inputs),
            ("champion", flavor_onnx(model_dir), champion_rows.inputs),
        ):
            session = make_session(path, "cpu", threads=0)
            outputs[name] = run_batched(session, inputs.astype(input_dtype(session), copy=False))
    return spec.head_to_head(outputs["candidate"], outputs["champion"], rows)


def version_preprocessing(client, version, folder: Path) -> Path | None:
    """The folder of the version's preprocessing files (a tokenizer, a scaler): `preprocessing/` of its model
    directory, downloaded into `folder / "model"`; None if it has none. A version registered before model
    directories held them has them in its run, under `model/preprocessing/`."""
    import mlflow

    from mlops_onnx.serving.artifacts import PREPROCESSING, run_file

    model_dir = folder / "model"
    if not (model_dir / "MLmodel").is_file():
        model_dir = Path(
            mlflow.artifacts.download_artifacts(f"models:/{version.name}/{version.version}", dst_path=str(model_dir))
        )
    if (model_dir / PREPROCESSING).is_dir() and any((model_dir / PREPROCESSING).iterdir()):
        return model_dir / PREPROCESSING
    if not client.list_artifacts(version.run_id, "model/preprocessing"):
        return None
    return run_file(version, "model/preprocessing", folder)


def _log_head_to_head(spec, state: dict, result, champion_version: str) -> None:
    import mlflow

    from mlops_onnx.decisions import write_artifacts

    table, plot = write_artifacts(result, Path(state["workdir"]) / "reports", champion_version)
    with mlflow.start_run(run_id=state["mlflow_run_id"]):
        mlflow.log_metrics(
            {
                "compare_rows": len(result.rows),
                "compare_p_value": result.test.p_value,
                f"compare_candidate_{result.metric}": result.candidate,
                f"compare_champion_{result.metric}": result.champion,
                "compare_statistic": result.test.statistic,
            }
        )
        mlflow.set_tags(
            {
                "compare_champion_version": champion_version,
                "compare_test": result.test.test,
                "compare_alternative": result.claim,
                "compare_detail": str(result.test.detail)[:500],
            }
        )
        mlflow.log_artifact(str(table), "reports")
        mlflow.log_artifact(str(plot), "plots")


def _register(spec, client, ctx: RunContext, state: dict, decided: Decision) -> str:
    import mlflow

    score = state["metrics"][spec.primary_metric]
    variant = serving_variant(state)
    with mlflow.start_run(run_id=state["mlflow_run_id"]):
        model_uri = _log_model(spec, state, variant)
        tags = {
            "data_hash": state["snapshot"],
            **state.get("fingerprint", {}),
            "data_source": state["data_source"],
            "git_commit": tracking.code_version(),
            "airflow_dag_id": ctx.dag_id,
            "airflow_run_id": ctx.run_id,
            "parity_status": "passed",
            "architecture": spec.architecture,
            "serving_variant": variant,
            spec.primary_metric: f"{score:.6f}",
            "variants_passed": ",".join(sorted(state.get("passing_variants", {}))) or "none",
            "forced": str(state.get("forced", False)).lower(),
            "promotion_decision": decided.outcome,
            "promotion_reason": decided.reason,
        } | ({"airflow_logical_date": ctx.logical_date} if ctx.logical_date else {})
        version = str(mlflow.register_model(model_uri, spec.name, tags=tags).version)
        mlflow.set_tags(
            {
                "gate_status": "registered",
                "registered_model": spec.name,
                "registered_version": version,
                "serving_variant": variant,
            }
        )
    return version


def _move_alias(
    spec, client, version: str, compared_with, decided: Decision, state: dict, settings: Settings, attempts: int = 3
) -> tuple[Decision, str]:
    """Set `champion` or `challenger` by `decided`; if the champion changed since that comparison, compare
    again with the new one first. The decision that stood, and the alias it set."""
    for _ in range(attempts):
        alias = CHAMPION if decided.takes_champion else CHALLENGER
        if alias == CHAMPION and compare_and_set_champion(client, spec.name, compared_with, version):
            break
        now = current_champion(client, spec.name)
        if alias == CHALLENGER and same_version(now, compared_with):
            client.set_registered_model_alias(spec.name, alias, version)
            break
        log.warning("champion of %s moved to %s during the comparison; comparing again", spec.name, now and now.version)
        compared_with = now
        decided = _decide(spec, client, now, state, settings, exclude=version)
    else:
        raise RuntimeError(f"{spec.name}: the champion kept moving during {attempts} comparisons; nothing moved")
    record_decision(spec.name, client, version, state["mlflow_run_id"], decided, alias)
    if alias == CHAMPION and compared_with is not None and str(compared_with.version) != version:
        record_displaced(spec.name, client, compared_with, version, decided.reason)
    return decided, alias


def _finish_existing(spec, client, existing, ctx: RunContext, state: dict, settings: Settings) -> dict:
    """This DAG run (or this night) registered before: never again. An earlier try that registered but died
    before the alias is finished: compared again with the champion it did not become."""
    run_id = state["mlflow_run_id"]
    version = str(existing.version)
    log.warning("run %s already registered %s version %s; not registering again", ctx.run_id, spec.name, version)
    aliases = list(existing.aliases)
    decision = existing.tags.get("promotion_decision", "")
    if not aliases and decision != REJECTED_IN_SERVER:  # a version the server refused keeps no alias
        champion = current_champion(client, spec.name)
        decided = _decide(
            spec,
            client,
            champion,
            {
                **state,
                "metrics": state.get("metrics") or {spec.primary_metric: float(existing.tags[spec.primary_metric])},
            },
            settings,
            exclude=version,
        )
        decided, alias = _try_then_move(spec, client, version, champion, decided, state, settings)
        decision, aliases = decided.outcome, [alias] if alias else []
    tags = {"gate_status": "registered", "registered_version": version, "registered_alias": (aliases or ["none"])[0]}
    if existing.run_id != run_id:
        tags["gate_reason"] = (
            f"already registered as version {version} for logical date "
            f"{ctx.logical_date} by {existing.tags.get('airflow_run_id')}"
        )
        tags["promotion_decision"] = decision
    tracking.set_run_tags(run_id, tags)
    return {
        **state,
        "registered": True,
        "version": version,
        "aliases": aliases,
        "gate": "registered",
        "promotion_decision": decision,
    }

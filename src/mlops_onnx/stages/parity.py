"""`parity`: native vs ONNX fp32 and every variant, on the test split (a stratified sample of a large one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlops_onnx.settings import get_settings
from mlops_onnx.stages import ParityError, mlflow_run, run_snapshot, stage, write_report
from mlops_onnx.tracking import RunContext


@stage(reads=("checkpoint", "onnx_fp32", "variants", "preprocessing", "evaluation_files"))
def parity(spec, ctx: RunContext, state: dict) -> dict:
    """Compare native vs ONNX fp32 and every variant on the test split, or on `MLOPS_PARITY_MAX_ROWS` of its
    rows sampled per class (stocks: per ticker) when it is larger (`mlops_onnx.parity.parity_sample`)."""
    import mlflow

    from mlops_onnx.parity import VariantParity, compare, parity_sample
    from mlops_onnx.runtime import make_session, run_batched

    settings = get_settings()
    rows = spec.evaluation_data(run_snapshot(state, settings), settings, Path(state["workdir"]))
    test_rows = len(rows.inputs)
    sample = parity_sample(spec.parity_strata(rows), test_rows, settings.parity_max_rows, settings.seed)
    inputs, targets = rows.inputs[sample], rows.targets[sample]
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
        "test_rows": test_rows,
        "rules": spec.parity_rules.__dict__,
        "variants": {n: r.to_dict() for n, r in results.items()},
    }
    report["reference"] = reference = reference_parity(state["onnx_fp32"], inputs)
    path = write_report(state, "parity.json", report)
    fp32 = results["fp32"]
    with mlflow_run(state):
        mlflow.log_artifact(str(path), "reports")
        mlflow.log_metrics({"parity_rows": len(inputs), "parity_test_rows": test_rows})
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
        mlflow.set_tag("parity_fp32_reference", reference["status"])
        if reference["max_abs_diff"] is not None:
            mlflow.log_metrics(
                {
                    "parity_fp32_reference_max_abs_diff": reference["max_abs_diff"],
                    "parity_fp32_reference_rows": reference["rows"],
                }
            )
        if not fp32.passed:
            reason = "fp32 parity failed: " + "; ".join(fp32.reasons)
            mlflow.set_tags({"gate_status": "rejected", "gate_reason": reason})
    for name, r in results.items():
        agreement = "n/a" if r.agreement is None else f"{r.agreement:.4%}"
        print(
            f"[{spec.name}] parity {name:<13} {'PASS' if r.passed else 'FAIL'}  max_abs_diff={r.max_abs_diff:.3g}"
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


REFERENCE_ROWS = 8  # onnx's reference runtime is plain numpy, op by op: a few rows say whether both agree


def reference_parity(onnx_path: str, inputs: np.ndarray, rows: int = REFERENCE_ROWS) -> dict:
    """ONNX Runtime against a second ONNX implementation, the `onnx` package's `ReferenceEvaluator`, on the
    first `rows` test rows: reported, never gated (an op the reference does not implement is said so)."""
    import time

    from onnx.reference import ReferenceEvaluator

    from mlops_onnx.runtime import make_session

    sample = np.ascontiguousarray(inputs[:rows])
    started = time.perf_counter()
    try:
        session = make_session(onnx_path, "cpu", threads=0)
        expected = session.run(None, {session.get_inputs()[0].name: sample})[0]
        evaluator = ReferenceEvaluator(onnx_path)
        got = evaluator.run(None, {evaluator.input_names[0]: sample})[0]
        diff = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - expected))) if expected.size else 0.0
    except Exception as exc:  # reported, not gated: the reference runtime does not implement every op
        return {"status": f"not run: {type(exc).__name__}: {str(exc)[:300]}", "rows": 0, "max_abs_diff": None}
    seconds = time.perf_counter() - started
    return {"status": "ran", "rows": len(sample), "max_abs_diff": diff, "seconds": round(seconds, 2)}


def run_batched_native(predict, inputs: np.ndarray, batch: int = 512) -> np.ndarray:
    return np.concatenate([predict(inputs[i : i + batch]) for i in range(0, len(inputs), batch)])

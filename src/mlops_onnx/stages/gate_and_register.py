"""`gate_and_register`: the best candidate that passed, the head-to-head with the champion, the registry."""

from __future__ import annotations

from pathlib import Path

from mlops_onnx import tracking
from mlops_onnx.settings import Settings, get_settings
from mlops_onnx.stages import EVERY_FILE, NoCandidate, StageSkipped, stage
from mlops_onnx.tracking import RunContext


@stage(reads=EVERY_FILE)
def gate_and_register(spec, ctx: RunContext, state: dict) -> dict:
    """Of tonight's candidates that got through every stage, those that pass the absolute gate are compared
    by paired tests on their shared validation rows (`decisions.choose`: a more complex one only if it beats
    every simpler one clearly); the chosen one meets the champion head to head on the test rows
    (`registry.gate_and_register`), whatever the champion's architecture. Every candidate's run and
    the night's run say what became of it, in one sentence."""
    from mlops_onnx import approval
    from mlops_onnx.catalog import PIPELINES
    from mlops_onnx.decisions import AWAITING_APPROVAL, FIRST_CHAMPION, NOT_CHOSEN, PROMOTED, REJECTED, SKIPPED
    from mlops_onnx.models import load_spec
    from mlops_onnx.registry import gate_and_register as register
    from mlops_onnx.registry import gate_reasons

    settings = get_settings()
    tracking.configure(settings)
    night = {k: v for k, v in state.items() if k != "candidate_results"}
    finished = {r["architecture"]: r for r in state.get("candidate_results", [])}
    # Why each candidate that did not reach the gate stopped (read from its run only for those).
    dropped = {
        a: _run_tags(spec.name, ctx, a, settings) for a in PIPELINES[spec.name].active(settings) if a not in finished
    }
    outcomes = {a: tracking.why_dropped_out(tags) for a, tags in dropped.items()}
    passing = {}
    for architecture, result in finished.items():
        candidate_spec = load_spec(spec.name, architecture)
        reasons = gate_reasons(candidate_spec, result, settings)
        if reasons:
            outcomes[architecture] = "rejected by the gate: " + "; ".join(reasons)
            tracking.set_run_tags(
                result["mlflow_run_id"],
                {
                    "gate_status": "rejected",
                    "gate_reason": "; ".join(reasons),
                    "promotion_decision": REJECTED,
                    "promotion_reason": f"Rejected by the gate: {'; '.join(reasons)}.",
                    "candidate_status": "rejected",
                },
            )
        else:
            passing[architecture] = (candidate_spec, result)
    summary = "; ".join(f"{a}: {why}" for a, why in outcomes.items() if a not in passing)

    if not passing:
        if finished:  # they got through every stage but none passed the gate: the night is decided
            reason = f"Rejected by the gate: no candidate passed ({summary})."
            _tag_night(night, {"gate_status": "rejected", "promotion_decision": REJECTED, "promotion_reason": reason})
            print(f"[{spec.name}] GATE REJECTED: {reason} Nothing registered.", flush=True)
            return {**night, "registered": False, "gate": "rejected", "gate_reason": reason}
        if dropped and all(tags.get("promotion_decision") == SKIPPED for tags in dropped.values()):
            _tag_night(night, {"gate_status": "skipped", "promotion_decision": SKIPPED, "promotion_reason": summary})
            raise StageSkipped(f"every candidate unchanged: {summary}")
        reason = f"No candidate got through: {summary or 'none ran'}."
        _tag_night(night, {"gate_status": "failed", "promotion_reason": reason})
        raise NoCandidate(reason)

    choice = _choose(spec, passing, night, settings)
    best = choice.chosen
    best_spec, best_state = passing[best]
    for architecture, (_, other) in passing.items():
        if architecture != best:
            outcomes[architecture] = "not chosen: " + choice.reasons[architecture].removeprefix("Not chosen: ")
            tracking.set_run_tags(
                other["mlflow_run_id"],
                {
                    "gate_status": "passed",
                    "promotion_decision": NOT_CHOSEN,
                    "promotion_reason": choice.reasons[architecture],
                    "candidate_status": "not chosen",
                },
            )
    result = register(best_spec, ctx, best_state, settings)
    decided = tracking.get_run_tags(best_state["mlflow_run_id"])
    _tag_night(
        night,
        {
            "chosen_architecture": best,
            "gate_status": decided.get("gate_status", ""),
            "promotion_decision": result.get("promotion_decision", ""),
            "promotion_reason": decided.get("promotion_reason", ""),
            "candidates_dropped": "; ".join(f"{a}: {why}" for a, why in outcomes.items()) or "none",
        }
        | ({"registered_version": result["version"]} if result.get("version") else {}),
    )
    tracking.set_run_tags(best_state["mlflow_run_id"], {"candidate_status": "chosen"})
    if result.get("promotion_decision") in (FIRST_CHAMPION, PROMOTED):
        tell(spec.name, ctx, result, decided.get("promotion_reason", ""), settings)
    if result.get("promotion_decision") == AWAITING_APPROVAL:  # the DAG's approve_promotion shows it
        result["approval"] = approval.request(spec.name, result["version"], night["mlflow_run_id"], settings)
    return result


def tell(model: str, ctx: RunContext, result: dict, reason: str, settings: Settings, event: str = "") -> None:
    """One message: the champion moved (`notify`; nothing without a channel), or `event`."""
    from mlops_onnx import links, notify

    message = notify.Message(
        event or notify.CHAMPION_MOVED,
        model,
        f"{result['promotion_decision']}: v{result['version']}",
        reason,
        notify.airflow_run_url(ctx.dag_id, ctx.run_id),
        links.model_url(model, str(result["version"])),
    )
    notify.send(message, settings)


def _choose(spec, passing: dict, night: dict, settings: Settings):
    """`decisions.choose` on the candidates' validation outputs; each candidate's run gets its `choice_test`,
    `choice_p_value` (against the chosen one) and `choice_reason`, the night's run every pairwise test."""
    import mlflow

    from mlops_onnx.decisions import choose
    from mlops_onnx.models import Scored
    from mlops_onnx.variants import onnx_parameters

    missing = [a for a, (_, s) in passing.items() if not s.get("validation_outputs")]
    if missing:
        raise ValueError(f"{spec.name}: no validation outputs from {', '.join(missing)}: its train must return them")
    scored = {a: Scored.load(Path(s["validation_outputs"])) for a, (_, s) in passing.items()}
    complexity = {a: onnx_parameters(Path(s["onnx_fp32"])) for a, (_, s) in passing.items()}
    choice = choose(spec, scored, complexity, settings.promotion_alpha)
    for architecture, (_, state) in passing.items():
        test = choice.against_chosen(architecture)
        with mlflow.start_run(run_id=state["mlflow_run_id"]):
            mlflow.set_tags(
                {"choice_reason": choice.reasons[architecture][:5000]} | ({"choice_test": test.test} if test else {})
            )
            mlflow.log_metrics(
                {"choice_rows": choice.rows, "onnx_parameters": complexity[architecture]}
                | ({"choice_p_value": test.p_value} if test else {})
                | ({f"choice_{choice.metric}": choice.scores[architecture]} if architecture in choice.scores else {})
            )
    with mlflow.start_run(run_id=night["mlflow_run_id"]):
        mlflow.set_tags({"choice_reason": choice.reasons[choice.chosen][:5000], "choice_rows": str(choice.rows)})
        mlflow.log_metrics({f"choice_p_{a}_vs_{b}": t.p_value for (a, b), t in choice.tests.items()})
        mlflow.log_dict(
            {
                "chosen": choice.chosen,
                "rows": choice.rows,
                "metric": choice.metric,
                "scores": choice.scores,
                "parameters": choice.complexity,
                "tests": choice.table(),
                "reasons": choice.reasons,
            },
            "reports/candidate_choice.json",
        )
    print(f"[{spec.name}] candidate choice: {choice.reasons[choice.chosen]}", flush=True)
    return choice


def _run_tags(model: str, ctx: RunContext, architecture: str, settings: Settings) -> dict[str, str]:
    """The tags of a candidate's MLflow run this night (what became of it), {} without one."""
    run_id = tracking.find_run(model, ctx, settings, architecture)
    return tracking.get_run_tags(run_id) if run_id else {}


def _tag_night(night: dict, tags: dict) -> None:
    tracking.set_run_tags(night["mlflow_run_id"], tags)

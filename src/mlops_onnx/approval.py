"""A human approves the close calls: MLOPS_PROMOTION_APPROVAL = never | close | always.

With `close`, a candidate better on the metric whose paired test did not reach alpha is registered as
`challenger` with the decision `awaiting_approval` (after its server trial), and the night's
`approve_promotion` task waits in Airflow's human-in-the-loop operator (the UI's "Required actions", or
`PATCH /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/approve_promotion/-1/hitlDetails`). `request` writes
what the form shows: the numbers of the head-to-head and links to its plot, its per-row table and the
version. `answer` applies the response: Approve moves `champion` through the same compare-and-set as a
night (only if the champion is still the one compared with) and names the approver in the reason; Reject,
or no answer within MLOPS_APPROVAL_TIMEOUT_HOURS, keeps the champion. `always` asks for every move.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from mlops_onnx import tracking
from mlops_onnx.champion import (
    CHALLENGER,
    CHAMPION,
    compare_and_set_champion,
    current_champion,
    record_decision,
    record_displaced,
)
from mlops_onnx.settings import Settings

APPROVE, REJECT = "Approve", "Reject"  # the options of the HITL form; Reject is also what a timeout answers


@dataclass(frozen=True)
class Answered:
    """What the human's answer (or its absence) did."""

    decision: str  # promoted or kept_champion
    reason: str  # one sentence, on the version, its run and the night's run
    version: str
    approver: str | None  # None: nobody answered in time


def request(model: str, version: str, night_run_id: str, settings: Settings) -> dict:
    """The approval request of `model` v`version` (registered `awaiting_approval`): the HITL form's subject
    and Markdown body, and what `answer` needs."""
    from mlflow import MlflowClient

    from mlops_onnx import links

    tracking.configure(settings)
    client = MlflowClient()
    registered = client.get_model_version(model, version)
    run = client.get_run(registered.run_id)
    tags, metrics = run.data.tags, run.data.metrics
    champion = tags.get("compare_champion_version")
    reason = registered.tags["promotion_reason"]
    run_link = links.run_url(run.info.experiment_id, run.info.run_id)
    lines = [f"**{model} v{version}** ({registered.tags.get('architecture', '?')}): {reason}", ""]
    if champion:
        metric = next(k.removeprefix("compare_candidate_") for k in metrics if k.startswith("compare_candidate_"))
        ours, theirs = metrics[f"compare_candidate_{metric}"], metrics[f"compare_champion_{metric}"]
        lines += [
            f"| on the same {int(metrics['compare_rows'])} test rows | candidate v{version} | champion v{champion} |",
            "|---|---|---|",
            f"| {metric} | {ours:.4f} | {theirs:.4f} |",
            "",
            f"Paired test: {tags['compare_test']}, one-sided p = {metrics['compare_p_value']:.3g} for "
            f'"{tags["compare_alternative"]}" (alpha {settings.promotion_alpha:g}).',
            "",
            f"![head to head]({_artifact_url(run.info.run_id, 'plots/head_to_head.png')})",
            "",
            f"Plot and per-row table in the [candidate's MLflow run]({run_link}) "
            "(`plots/head_to_head.png`, `reports/head_to_head.csv`).",
        ]
    else:
        lines.append(f"No champion yet. The [candidate's MLflow run]({run_link}) has its metrics.")
    lines += [
        "",
        f"Version: [v{version}]({links.model_url(model, version)}). **Approve**: v{version} becomes champion, with "
        f"your name in the reason. **Reject**, or no answer within {settings.approval_timeout_hours:g} h: the "
        "champion stays.",
    ]
    return {
        "model": model,
        "version": version,
        "champion_version": champion,
        "night_run_id": night_run_id,
        "candidate_run_id": registered.run_id,
        "why": reason.split("): ", 1)[-1],  # the test's sentence, without "Awaiting approval in Airflow (...): "
        "subject": f"{model}: make v{version} champion?" + (f" (champion: v{champion})" if champion else ""),
        "body": "\n".join(lines),
    }


def answer(asked: dict, response: dict | None, settings: Settings) -> Answered:
    """Apply the HITL response (`chosen_options`, `responded_by_user`; None or no user: the timeout's
    default) to the version `asked` is about, record the decision on the version and both runs."""
    from mlflow import MlflowClient

    from mlops_onnx.decisions import KEPT, PROMOTED, Decision

    tracking.configure(settings)
    client = MlflowClient()
    model, version, why = asked["model"], asked["version"], asked["why"]
    user = (response or {}).get("responded_by_user") or {}
    approver = user.get("name") or user.get("id")
    chosen = (response or {}).get("chosen_options") or []
    champion = current_champion(client, model)
    now = str(champion.version) if champion is not None else None
    if approver is None:
        hours = f"{settings.approval_timeout_hours:g} h (MLOPS_APPROVAL_TIMEOUT_HOURS)"
        decision, reason = KEPT, f"Champion kept: no answer to the approval request within {hours}: {why}"
    elif APPROVE not in chosen:
        decision, reason = KEPT, f"Champion kept: rejected by {approver} in Airflow: {why}"
    elif now != asked["champion_version"] or not compare_and_set_champion(client, model, champion, version):
        was = f"v{asked['champion_version']}" if asked["champion_version"] else "no champion"
        decision = KEPT
        reason = (
            f"Champion kept: approved by {approver}, but the champion moved from {was} to v{now} while the "
            f"request waited, so the comparison it approved no longer holds: {why}"
        )
    else:
        decision, reason = PROMOTED, f"Promoted on approval by {approver} in Airflow: {why}"
    alias = CHAMPION if decision == PROMOTED else CHALLENGER
    if decision == PROMOTED and _alias_version(client, model, CHALLENGER) == version:
        client.delete_registered_model_alias(model, CHALLENGER)  # a champion is nobody's challenger
    record_decision(
        model,
        client,
        version,
        asked["candidate_run_id"],
        Decision(decision, reason),
        alias,
        "after the approval request",
    )
    tracking.set_run_tags(
        asked["night_run_id"],
        {"promotion_decision": decision, "promotion_reason": reason, "approved_by": approver or "nobody"},
    )
    if decision == PROMOTED and champion is not None:
        record_displaced(model, client, champion, version, reason)
    return Answered(decision, reason, version, approver)


def _alias_version(client, model: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def _artifact_url(run_id: str, path: str) -> str:
    """The MLflow server's address of one run artifact (what the MLflow UI's artifact view loads)."""
    from mlops_onnx import links

    return f"{links.mlflow_ui_base()}/get-artifact?path={quote(path)}&run_uuid={run_id}"

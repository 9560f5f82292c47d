"""One message per event an operator must hear about, through Airflow's own notifiers: the smtp provider's
`SmtpNotifier` (on the standard connection `smtp_default`, e.g. `AIRFLOW_CONN_SMTP_DEFAULT`) and the apprise
provider's `AppriseNotifier` (any Apprise URL, Slack's included, in the connection MLOPS_NOTIFY_APPRISE names):

- a champion that moved (the gate stage, after the alias moved: first champion or promotion; or the
  `apply_approval` stage, on an approval);
- a version that waits for approval (MLOPS_PROMOTION_APPROVAL), with the link to Airflow's form;
- a night that failed (the DAG's failure callback), or, when its data failed validation, that instead.

Each message holds the model, the decision, the one-sentence reason and links to the Airflow run and the
MLflow run or version. Recipients are `MLOPS_NOTIFY_EMAIL` (comma-separated) and the Apprise connection's
URLs; with neither, nothing is sent.
A message that cannot be sent is logged and never fails the night.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass

from mlops_onnx.settings import Settings, get_settings

log = logging.getLogger(__name__)
CHAMPION_MOVED, NIGHT_FAILED, DATA_INVALID = "champion moved", "night failed", "data failed validation"
APPROVAL_NEEDED = "approval needed"  # MLOPS_PROMOTION_APPROVAL: a version waits for a human


@dataclass(frozen=True)
class Message:
    event: str
    model: str
    decision: str
    reason: str
    airflow_url: str
    mlflow_url: str

    @property
    def subject(self) -> str:
        return f"[mlops-onnx] {self.model}: {self.event} ({self.decision})"

    @property
    def html(self) -> str:
        rows = [
            ("model", self.model),
            ("event", self.event),
            ("decision", self.decision),
            ("reason", self.reason),
        ]
        cells = "".join(f"<tr><th align='left'>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
        links = (
            f"<p><a href='{html.escape(self.airflow_url)}'>Airflow run</a> · "
            f"<a href='{html.escape(self.mlflow_url)}'>MLflow</a></p>"
        )
        return f"<table>{cells}</table>{links}"


def send(message: Message, settings: Settings | None = None) -> bool:
    """Send `message` through every configured channel: a mail to MLOPS_NOTIFY_EMAIL (SMTP), and the Apprise
    URLs of the Airflow connection named by MLOPS_NOTIFY_APPRISE (Slack, Teams, a webhook: any Apprise URL).
    False when no channel is configured or none delivered it."""
    settings = settings or get_settings()
    sent = []
    for channel, notifier in _notifiers(message, settings):
        try:
            _deliver(notifier)
        except Exception:
            log.exception("could not send the %r message for %s by %s", message.event, message.model, channel)
            continue
        sent.append(channel)
    if sent:
        log.warning("sent %r for %s by %s", message.event, message.model, " and ".join(sent))
    return bool(sent)


def _deliver(notifier) -> None:
    """Run the notifier (the texts are final: no template rendering, a reason may hold braces). The apprise
    provider drops Apprise's own verdict, so a URL that failed is read from Apprise's log and raised."""
    from airflow.providers.apprise.notifications.apprise import AppriseNotifier

    if not isinstance(notifier, AppriseNotifier):
        notifier.notify({})
        return
    import apprise

    with apprise.LogCapture(level=logging.WARNING) as problems:
        notifier.notify({})
    if problems.getvalue().strip():
        raise RuntimeError(f"Apprise did not deliver: {problems.getvalue().strip()[:500]}")


def _notifiers(message: Message, settings: Settings) -> list[tuple[str, object]]:
    notifiers = []
    if settings.notify_email:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        mail = SmtpNotifier(
            to=list(settings.notify_email),
            from_email=settings.notify_from,
            subject=message.subject,
            html_content=message.html,
        )
        notifiers.append((f"mail to {', '.join(settings.notify_email)}", mail))
    if settings.notify_apprise:
        from airflow.providers.apprise.notifications.apprise import AppriseNotifier

        lines = [f"{k}: {v}" for k, v in (("decision", message.decision), ("reason", message.reason))]
        body = "\n".join([*lines, f"Airflow: {message.airflow_url}", f"MLflow: {message.mlflow_url}"])
        notifiers.append(
            (
                f"Apprise ({settings.notify_apprise})",
                AppriseNotifier(body=body, title=message.subject, apprise_conn_id=settings.notify_apprise),
            )
        )
    return notifiers


def airflow_run_url(dag_id: str, run_id: str) -> str:
    """The DAG run in Airflow 3's UI (its `[api] base_url`, else this host's `MLOPS_AIRFLOW_PORT`)."""
    from urllib.parse import quote

    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="") or f"http://127.0.0.1:{get_settings().airflow_port}"
    return f"{base.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id)}"


def night_failed(context) -> None:
    """The DAG's `on_failure_callback`: one message for the failed night, saying which tasks failed, or,
    when the night's data failed validation, that and why."""
    from mlops_onnx import links, tracking
    from mlops_onnx.catalog import PIPELINES

    dag_id = context["dag"].dag_id
    model = next(m for m, p in PIPELINES.items() if p.dag_id == dag_id)
    settings = get_settings()
    if not (settings.notify_email or settings.notify_apprise):
        return
    ctx = tracking.RunContext(dag_id=dag_id, run_id=context.get("run_id") or context["dag_run"].run_id)
    run_id = tracking.find_run(model, ctx, settings)
    tags = tracking.get_run_tags(run_id) if run_id else {}
    if tags.get("validation_status") == "failed":
        event, reason = DATA_INVALID, tags.get("validation_reason") or "see the validation report"
    else:
        failed = _failed_tasks(context, ctx)
        said = tags.get("promotion_reason") or str(context.get("reason") or "")
        reason = "; ".join(filter(None, [f"failed: {', '.join(failed)}" if failed else "", said])) or "see Airflow"
        event = NIGHT_FAILED
    experiment = tracking.experiment_id(model, settings) if run_id else None
    mlflow_url = links.run_url(experiment, run_id) if run_id else links.model_url(model)
    send(Message(event, model, "nothing registered", reason, airflow_run_url(ctx.dag_id, ctx.run_id), mlflow_url))


def _failed_tasks(context, ctx) -> list[str]:
    """The run's failed tasks, the first to fail first, from the metadata DB; where a callback cannot read it,
    the task instance Airflow hands the callback (the last to fail)."""
    try:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        query = (
            select(TaskInstance.task_id)
            .where(TaskInstance.dag_id == ctx.dag_id, TaskInstance.run_id == ctx.run_id, TaskInstance.state == "failed")
            .order_by(TaskInstance.end_date)
        )
        with create_session() as session:
            return list(dict.fromkeys(session.scalars(query)))
    except Exception:
        ti = context.get("ti")
        return [ti.task_id] if ti is not None else []

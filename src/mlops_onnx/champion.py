"""The `champion` alias: who holds it, the compare-and-set that moves it, the record a displaced version
keeps, and `python -m mlops_onnx.cli rollback <model> [--to VERSION] --reason "..."`.

A rollback moves the alias through the same compare-and-set as a nightly promotion (only if the champion is
still the one it read); the versions say who moved it, why and from where, a run in the model's experiment
records the same, and API servers on this MLOPS_HOME are told to read the alias again (others on their next
poll). Without `--to`, the version the current champion displaced most recently becomes champion again.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlops_onnx import tracking
from mlops_onnx.settings import Settings

if TYPE_CHECKING:  # not at import: the DAG file imports this module (through `approval`), and decisions pandas
    from mlops_onnx.decisions import Decision

CHAMPION, CHALLENGER = "champion", "challenger"
ROLLED_BACK = "rolled_back"  # the `promotion_decision` of a version made champion by hand


class RollbackError(ValueError):
    """The rollback cannot be done as asked; nothing moved."""


@dataclass(frozen=True)
class Rollback:
    model: str
    from_version: str
    to_version: str
    reason: str
    by: str
    run_id: str

    def sentence(self) -> str:
        moved = f"v{self.from_version} to v{self.to_version}"
        return f"{self.model}: champion rolled back from {moved} by {self.by}: {self.reason}"


def current_champion(client, name: str):
    """The version at `champion`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def same_version(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and str(a.version) == str(b.version))


def compare_and_set_champion(client, name: str, expected, version: str) -> bool:
    """Point `champion` at `version` only if it is still at `expected` (None: no champion yet). The nightly
    registry task is one at a time per model (its pool); this re-read guards against a rollback meanwhile."""
    if not same_version(current_champion(client, name), expected):
        return False
    client.set_registered_model_alias(name, CHAMPION, version)
    return True


def record_decision(
    name: str, client, version: str, run_id: str, decided: Decision, alias: str | None, when: str = "on registration"
) -> None:
    """The decision in words on the run and on the version (its description is what the MLflow UI shows)."""
    reason, compared = decided.reason, decided.compared
    tags = {"promotion_decision": decided.outcome, "promotion_reason": reason}
    if compared is not None:
        tags |= {
            "compare_p_value": f"{compared.test.p_value:.6g}",
            "compare_test": compared.test.test,
            "compare_alternative": compared.claim,
        }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    on_registration = f"Alias {when}: @{alias}." if alias else "No alias: champion did not move."
    client.update_model_version(name, version, description=f"{reason} {on_registration}")
    tracking.set_run_tags(
        run_id, {"promotion_decision": decided.outcome, "promotion_reason": reason, "registered_alias": alias or "none"}
    )


def record_displaced(name: str, client, displaced, version: str, reason: str) -> None:
    """The version that lost `champion` says so, when, and why, in its tags and its description (the earlier
    description, why it had become champion, is kept after it)."""
    client.set_model_version_tag(name, displaced.version, "displaced_by_version", version)
    client.set_model_version_tag(name, displaced.version, "displaced_reason", reason)
    client.set_model_version_tag(name, displaced.version, "displaced_at", f"{time.time():.3f}")
    earlier = f" Earlier: {displaced.description}" if displaced.description else ""
    client.update_model_version(
        name, displaced.version, description=f"No longer champion: v{version} took it. {reason}{earlier}"
    )


def previous_champion(client, name: str, current) -> str:
    """The version `current` displaced most recently (its `displaced_by_version` tag names it)."""
    displaced = [
        v for v in client.search_model_versions(f"name='{name}'") if v.tags.get("displaced_by_version") == current
    ]
    if not displaced:
        raise RollbackError(f"{name} v{current} displaced no earlier champion: name the version with --to")
    return str(max(displaced, key=lambda v: (float(v.tags.get("displaced_at", 0)), int(v.version))).version)


def rollback(name: str, reason: str, settings: Settings, to: str | None = None, by: str | None = None) -> Rollback:
    """Move `name`'s champion to `to` (default: the previous champion); raises RollbackError, moving nothing,
    when there is no champion, the target is not a version of the model or is already champion, or the
    champion moved while this ran."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if not reason.strip():
        raise RollbackError("a rollback needs a --reason: it is recorded on the versions and the run")
    tracking.configure(settings)
    client = MlflowClient()
    current = current_champion(client, name)
    if current is None:
        raise RollbackError(f"{name} has no champion to roll back")
    target = str(to) if to is not None else previous_champion(client, name, str(current.version))
    try:
        target_version = client.get_model_version(name, target)
    except MlflowException as exc:
        raise RollbackError(f"{name} has no version {target} ({exc.error_code})") from None
    if target == str(current.version):
        raise RollbackError(f"{name} v{target} is already champion")
    by = by or getpass.getuser()
    why = f"Rolled back from v{current.version} by {by}: {reason.strip()}"
    if not compare_and_set_champion(client, name, current, target):
        now = current_champion(client, name)
        moved = f"v{now.version}" if now is not None else "nobody"
        raise RollbackError(f"{name}'s champion moved from v{current.version} to {moved} meanwhile: run it again")
    record_displaced(name, client, current, target, why)
    tags = {"promotion_decision": ROLLED_BACK, "rollback_from_version": str(current.version), "rollback_by": by}
    for key, value in (tags | {"rollback_reason": reason.strip()}).items():
        client.set_model_version_tag(name, target, key, value)
    earlier = f" Earlier: {target_version.description}" if target_version.description else ""
    client.update_model_version(name, target, description=f"{why}.{earlier}")
    run = client.create_run(
        tracking.experiment_id(name, settings),
        run_name=f"rollback-v{current.version}-to-v{target}",
        tags=tags | {"run_kind": "rollback", "rollback_to_version": target, "mlflow.user": by, "model": name},
    )
    client.log_param(run.info.run_id, "reason", reason.strip()[:6000])
    client.set_terminated(run.info.run_id)
    _tell_servers(settings, name)
    return Rollback(name, str(current.version), target, reason.strip(), by, run.info.run_id)


def _tell_servers(settings: Settings, name: str) -> None:
    """Touch the reload signal every API worker on this MLOPS_HOME watches (`POST /reload` does the same)."""
    from mlops_onnx.serving.holder import signal_file, touch_signal

    touch_signal(signal_file(settings, name, CHAMPION))

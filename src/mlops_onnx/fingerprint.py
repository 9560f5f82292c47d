"""What a training run is made of: its data, its code and its configuration, hashed into one fingerprint.

fingerprint = sha256(data snapshot hash, code version, hash of the resolved training config). If an
earlier run of the same model with the same fingerprint got through the gate (registered or rejected),
training again would only repeat it: the night trains nothing and says which run it would repeat.
The resolved config holds every setting the spec reads and the versions of the frameworks that build
and export it (`ModelSpec.toolchain`). A code version of `unknown` (an image built without one) says
nothing about the code, so such a night is never skipped as unchanged.
"""

from __future__ import annotations

import hashlib
import json

from mlops_onnx import tracking
from mlops_onnx.decisions import DECIDED, NOT_CHOSEN
from mlops_onnx.settings import Settings

UNKNOWN_CODE = "unknown"  # MLOPS_CODE_VERSION of an image built before its code version was stamped


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(spec, data_hash: str, settings: Settings) -> dict[str, str]:
    """The run's tags `data_hash`, `code_version`, `config_hash` and `fingerprint`."""
    code = tracking.code_version()
    configured = config_hash(spec.resolved_config(settings))
    combined = hashlib.sha256(f"{data_hash}\n{code}\n{configured}".encode()).hexdigest()
    return {"data_hash": data_hash, "code_version": code, "config_hash": configured, "fingerprint": combined}


def earlier_decision(client, experiment_id: str, fingerprint: str, this_run_id: str):
    """The newest other MLflow run with this fingerprint whose gate decided (promoted, kept, rejected), or None."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.fingerprint = '{fingerprint}'",
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    for run in runs:
        if run.info.run_id != this_run_id and run.data.tags.get("promotion_decision") in DECIDED:
            return run
    return None


def unchanged_reason(earlier) -> str:
    """One sentence: which run this night would repeat and what became of it."""
    tags = earlier.data.tags
    if tags.get("registered_version"):
        pruned = " (since pruned from the registry)" if tags.get("pruned_version") else ""
        outcome = f"version {tags['registered_version']}{pruned}, {tags['promotion_decision']}"
    elif tags.get("promotion_decision") == NOT_CHOSEN:  # passed the gate, behind another candidate that night
        outcome = tags.get("promotion_reason", "not chosen").rstrip(".")[:200]
    else:
        outcome = f"rejected by the gate ({tags.get('gate_reason', 'no reason recorded')[:200]})"
    return (
        f"unchanged since run {tags.get('airflow_run_id', earlier.info.run_id)} (same data "
        f"{tags.get('data_hash', '?')[:12]}, code {tags.get('code_version', '?')[:12]} and config "
        f"{tags.get('config_hash', '?')[:12]}): {outcome}"
    )

"""What changed tonight: an Evidently data-drift report of the new snapshot against `last_good`.

Each spec turns a snapshot into a table of columns that mean something for its data (`drift_frame`:
class shares and per-image statistics; class shares, article length and the current tokenizer's
out-of-vocabulary rate; daily returns, volume and range). Evidently's `DataDriftPreset` tests every
column (Wasserstein distance or Jensen–Shannon for categories, its defaults) and counts the drifted
share; drift is reported on the MLflow run (`drift_share`, `drift_detected`, the HTML and JSON), never
gated: a data change is what a retrain is for.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)
DRIFT_SHARE = 0.5  # Evidently's default: the dataset drifted when at least half its columns did


def sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    return frame.sample(n=max_rows, random_state=seed) if len(frame) > max_rows else frame


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, out_dir: Path) -> dict:
    """Run the report; write `drift_report.html` and `.json` into `out_dir`; return the headline figures."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # evidently's usage telemetry: off (and unreachable here)
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = [c for c in current.columns if pd.api.types.is_numeric_dtype(current[c])]
    categorical = [c for c in current.columns if c not in numeric]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset(drift_share=DRIFT_SHARE)]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out_dir / "drift_report.html"))
    payload = snapshot.dict()
    (out_dir / "drift_report.json").write_text(json.dumps(payload, indent=2, default=str))
    share, columns = 0.0, {}
    for metric in payload["metrics"]:
        name = metric["metric_name"]
        if name.startswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif name.startswith("ValueDrift("):
            column = metric["config"]["column"]
            columns[column] = {
                "score": float(metric["value"]),
                "method": metric["config"]["method"],
                "threshold": float(metric["config"]["threshold"]),
            }
    return {
        "drift_share": share,
        "drift_detected": float(share >= DRIFT_SHARE),
        "columns": columns,
        "reference_rows": len(reference),
        "current_rows": len(current),
    }

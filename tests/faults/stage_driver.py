"""Run one pipeline stage in a fresh process, as an Airflow worker runs one task (used by
test_resource_budget.py): `stage_driver.py MODEL STAGE STATE_JSON` reads the upstream state from
STATE_JSON (absent for `ingest`) and writes the stage's state back to it."""

import importlib
import json
import sys
from pathlib import Path

from mlops_onnx.models import load_spec
from mlops_onnx.tracking import RunContext

model, stage, state_path = sys.argv[1], sys.argv[2], Path(sys.argv[3])
ctx = RunContext("memory_budget", f"{model}_full_size")
upstream = [json.loads(state_path.read_text())] if state_path.exists() else []
if stage == "benchmark_cpu":  # without quantize and parity upstream: time the native model and ONNX fp32
    upstream[0].setdefault("passing_variants", {})
run = getattr(importlib.import_module(f"mlops_onnx.stages.{stage}"), stage)
state_path.write_text(json.dumps(run(load_spec(model), ctx, *upstream)))

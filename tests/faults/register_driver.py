"""One registration through the real registry code, in its own process (run by test_concurrency.py).

usage: register_driver.py RUN_ID ACCURACY ONNX_PATH [--go FILE] [--after SECONDS] [--hold SECONDS]

With --go it prepares everything (imports, MLflow run), writes RUN_ID.ready next to FILE and waits for
FILE to exist (then --after seconds more) before registering. --hold sleeps that long right after reading
the current champion: the window in which a check-then-set without a lock would let the other process's
write be overwritten.
"""

import argparse
import json
import time
from pathlib import Path

from mlflow import MlflowClient

from mlops_onnx import registry, tracking
from mlops_onnx.models.fashion import SPEC
from mlops_onnx.settings import get_settings
from mlops_onnx.tracking import RunContext

parser = argparse.ArgumentParser()
parser.add_argument("run_id")
parser.add_argument("accuracy", type=float)
parser.add_argument("onnx")
parser.add_argument("--go", type=Path)
parser.add_argument("--after", type=float, default=0.0)
parser.add_argument("--hold", type=float, default=0.0)
args = parser.parse_args()

settings = get_settings()
ctx = RunContext("fashion_mnist_nightly", args.run_id)
workdir = settings.work_dir / args.run_id
(workdir / "reports").mkdir(parents=True)
(workdir / "reports" / "parity.json").write_text("{}")
state = {"validation": "passed", "parity": {"fp32": True}, "metrics": {"test_accuracy": args.accuracy},
         "onnx_fp32": args.onnx, "snapshot": "ab" * 32, "data_source": "synthetic", "workdir": str(workdir),
         "passing_variants": {}, "bench_cpu_b1_p95_ms": {"onnx_fp32": 0.3},
         "mlflow_run_id": tracking.find_or_create_run(SPEC.name, ctx, settings)}  # fmt: skip

read_champion = MlflowClient.get_model_version_by_alias


def read_then_hold(self, *a, **k):
    version = read_champion(self, *a, **k)
    time.sleep(args.hold)
    return version


MlflowClient.get_model_version_by_alias = read_then_hold
if args.go:
    args.go.with_name(f"{args.run_id}.ready").touch()
    while not args.go.exists():
        time.sleep(0.02)
    time.sleep(args.after)
result = registry.gate_and_register(SPEC, ctx, state, settings)
print(json.dumps({"run_id": args.run_id, "version": result["version"], "aliases": result["aliases"],
                  "finished": time.time()}))  # fmt: skip

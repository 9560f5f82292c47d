"""`python -m mlops_onnx.benchmarks`: `make bench` (`all` = `prepare`, `run`, `report`) and the two
entries the harness runs in fresh interpreters (`worker`: one cell; `nightly`: the GPU task).

1. `prepare` — for each model, its registered version (`champion`, else the newest) and every other
   candidate architecture of the night that produced it (of the newest night when none is registered)
   that got through export, with their files from MLflow and the shared storage: one bundle per
   architecture (`benchmarks.bundle`); a candidate that stopped earlier is listed with its reason.
2. `run` — every cell in a fresh interpreter, parity judged by the model's spec; `benchmark.json`.
3. `report` — `benchmark.md`, PNG charts, the targets, the table of docs/performance.md and one MLflow run;
   `report --from DIR/benchmark.json` does it again alone, e.g. on what a GPU machine's
   `run --no-readme --no-mlflow` wrote.

Batch sizes, runs, warm-up, time budget, threads and providers come from the settings
(`MLOPS_BENCH_*`); a flag overrides one for this call.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlops_onnx.benchmarks.report import REPO_ROOT

REPORTS = REPO_ROOT / "reports"


def _config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batches", help="comma-separated batch sizes (default: MLOPS_BENCH_BATCHES)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--runs", type=int)
    parser.add_argument("--max-seconds", type=float)
    parser.add_argument("--probe-calls", type=int)
    parser.add_argument("--cell-timeout", type=float)


def _config(args: argparse.Namespace):
    from mlops_onnx.benchmarks.bundle import BenchConfig
    from mlops_onnx.settings import get_settings

    return BenchConfig.full(get_settings()).with_overrides(
        batches=tuple(int(b) for b in args.batches.split(",")) if args.batches else None,
        threads=args.threads,
        warmup=args.warmup,
        runs=args.runs,
        max_seconds=args.max_seconds,
        probe_calls=args.probe_calls,
        cell_timeout=args.cell_timeout,
    )


def parser() -> argparse.ArgumentParser:
    from mlops_onnx.benchmarks.cells import BINDINGS
    from mlops_onnx.catalog import PIPELINES

    root = argparse.ArgumentParser(prog="python -m mlops_onnx.benchmarks", description=__doc__.split("\n")[0])
    sub = root.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="the report step alone, again, from a run's benchmark.json")
    report.add_argument("--from", dest="source", type=Path, default=REPORTS / "benchmark.json")
    report.add_argument("--out-dir", type=Path, default=REPORTS)
    report.add_argument("--no-readme", action="store_true")
    report.add_argument("--no-mlflow", action="store_true")
    for name in ("prepare", "run", "all"):
        p = sub.add_parser(name)
        p.add_argument("--bundle-dir", type=Path, help="default: $MLOPS_BENCH_DIR/bundle")
        p.add_argument("--models", default=",".join(PIPELINES))
        p.add_argument("--providers", help="comma-separated: cpu, cuda, tensorrt (default: MLOPS_BENCH_PROVIDERS)")
        p.add_argument("--variants", default="", help="only these variants (e.g. native_eager,onnx_fp32)")
        p.add_argument("--out-dir", type=Path, default=REPORTS)
        p.add_argument("--no-readme", action="store_true")
        p.add_argument("--no-mlflow", action="store_true")
        _config_flags(p)
    worker = sub.add_parser("worker", help="one cell, in a fresh interpreter (started by `run`)")
    worker.add_argument("--bundle", type=Path, required=True)
    worker.add_argument("--variant", required=True)
    worker.add_argument("--provider", default="cpu")
    worker.add_argument("--binding", choices=BINDINGS, default="host")
    worker.add_argument("--profile", action="store_true")
    worker.add_argument("--outputs", type=Path, help="where to save the cell's outputs on the sample (.npy)")
    _config_flags(worker)
    nightly = sub.add_parser("nightly", help="the nightly benchmark of a bundle (the GPU task's fresh interpreter)")
    nightly.add_argument("--bundle", type=Path, required=True)
    nightly.add_argument("--providers", default="cuda,tensorrt")
    nightly.add_argument("--out", type=Path, required=True)
    _config_flags(nightly)
    return root


def worker_main(args: argparse.Namespace) -> int:
    """Print `BENCH-RESULT {json}`: the cell's rows, its profile, or the error that left it empty."""
    import numpy as np

    from mlops_onnx.benchmarks.cells import measure, profile_onnx
    from mlops_onnx.benchmarks.timing import gpu_stack

    cfg = _config(args)
    try:
        if args.profile:
            result = {
                "profile": profile_onnx(args.bundle, args.variant.removeprefix("onnx_"), args.provider, cfg.threads)
            }
        else:
            rows, outputs = measure(args.bundle, args.variant, args.provider, cfg, args.binding)
            if args.outputs:
                np.save(args.outputs, outputs)
            result = {"rows": rows}
            if args.provider != "cpu":
                result["gpu_stack"] = gpu_stack()
    except Exception as exc:  # reported as an empty cell with its reason, never a number
        result = {"error": f"{type(exc).__name__}: {exc}"[:600]}
    print("BENCH-RESULT " + json.dumps(result), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "worker":
        return worker_main(args)
    if args.command == "nightly":
        from mlops_onnx.benchmarks.nightly import nightly_main

        return nightly_main(args.bundle, tuple(args.providers.split(",")), _config(args), args.out)
    from mlops_onnx.benchmarks.publish import report_main

    if args.command == "report":
        report = json.loads(args.source.read_text())
        report_main(report, args.out_dir, readme=not args.no_readme, mlflow_log=not args.no_mlflow)
        return 0
    from mlops_onnx.benchmarks import suite
    from mlops_onnx.settings import get_settings

    settings = get_settings()
    bundle_dir = args.bundle_dir or settings.bench_dir / "bundle"
    if args.command in ("prepare", "all"):
        prepared = suite.prepare(settings, bundle_dir, args.models.split(","))
        if all("skipped" in meta for meta in prepared.values()):
            print(
                "[bench] nothing to benchmark: no candidate got through export (run `make demo` first)", file=sys.stderr
            )
            return 1
    if args.command in ("run", "all"):
        providers = args.providers.split(",") if args.providers else list(settings.bench_providers)
        variants = tuple(v for v in args.variants.split(",") if v)
        report = suite.run(bundle_dir, providers, _config(args), variants, args.out_dir)
        report_main(report, args.out_dir, readme=not args.no_readme, mlflow_log=not args.no_mlflow)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m mlops_onnx.cli demo|summary|airflow-env|pools|rollback`: what `make demo` runs, and more.

`demo` prepares Airflow's embedded state under MLOPS_HOME (SQLite metadata DB, the pools), runs
every nightly DAG end to end with `airflow dags test` (night 1), then once more on the same data
(night 2: nothing changed, so nothing trains), then prints and writes the summary with both nights'
times. `pools` creates the Airflow pools the DAGs use (what the compose init runs). `rollback` moves a
model's champion back by hand (`champion.rollback`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mlops_onnx.airflow_env import REPO_ROOT, airflow, airflow_environment, create_pools, prepare_airflow
from mlops_onnx.catalog import PIPELINES
from mlops_onnx.settings import Settings, get_settings

SUMMARY_PATH = REPO_ROOT / "reports" / "demo-summary.json"
HEADLINE_METRICS = (
    "test_accuracy",
    "test_macro_f1",
    "test_f1",
    "test_roc_auc",  # classifiers
    "test_accuracy_raw_text",
    "leakage_probe_subject_date_accuracy",
    "liar_accuracy",
    "liar_f1",
    "liar_roc_auc",  # fake news
    "val_mase",
    "test_mase",
    "test_mae",
    "naive_test_mae",
    "test_directional_accuracy",
    "baseline_naive_test_mase",
    "baseline_drift_test_mase",
    "baseline_ets_test_mase",  # forecaster
)


def run_demo(models: list[str], nights: int = 2, summary_path: Path = SUMMARY_PATH) -> int:
    settings = get_settings()
    print(
        f"MLOPS_HOME={settings.home}\nDATA SOURCE: {settings.data_source} ({settings.data_source_reason})\n"
        f"MLflow: {settings.tracking_uri}\nprofile: {settings.profile}\n"
        f"force retrain: {settings.force_retrain}\n",
        flush=True,
    )
    env = prepare_airflow(settings)
    env.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    from mlops_onnx.services import running_mlflow_url

    server = None if os.environ.get("MLFLOW_TRACKING_URI") else running_mlflow_url(settings)
    if server:  # `make up` is running: log through its server, so the UI shows the runs and artifacts
        env["MLFLOW_TRACKING_URI"] = server
        print(f"MLflow server of `make up` is running: logging to {server}\n", flush=True)
    summaries, failures = [], []
    for night in range(1, nights + 1):
        dag_seconds = {}
        for model in models:
            pipeline = PIPELINES[model]
            print(f"=== night {night}: {pipeline.dag_id} ({pipeline.title}) ===", flush=True)
            started = time.perf_counter()
            done = airflow(["dags", "test", pipeline.dag_id], env)
            dag_seconds[model] = time.perf_counter() - started
            print(
                f"=== night {night}: {pipeline.dag_id}: {'ok' if done.returncode == 0 else 'FAILED'} "
                f"in {dag_seconds[model]:.0f}s ===\n"
            )
            if done.returncode != 0:
                failures.append(f"{pipeline.dag_id} (night {night})")
        summaries.append(add_airflow_overhead(build_summary(settings, models), dag_seconds))
        if failures:
            break
    summary = {**summaries[0], "nights": [night_line(i + 1, s) for i, s in enumerate(summaries)]}
    if len(summaries) > 1:
        first, last = summary["nights"][0]["seconds"], summary["nights"][-1]["seconds"]
        summary["unchanged_night_share"] = round(last / first, 3) if first else None
    print_summary(summaries[0])
    print_nights(summary)
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nsummary written to {summary_path}")
    if failures:
        print(f"FAILED: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def night_line(night: int, summary: dict) -> dict:
    """One night of `make demo`: its wall time and what each model decided."""
    models = summary["models"].values()
    return {
        "night": night,
        "seconds": round(sum(e.get("dag_seconds", 0.0) for e in models), 1),
        "decisions": {m: e.get("promotion_decision") for m, e in summary["models"].items()},
        "registered_versions": {m: e.get("registered_version") for m, e in summary["models"].items()},
    }


def print_nights(summary: dict) -> None:
    print("\n" + "=" * 78)
    for line in summary["nights"]:
        decisions = ", ".join(f"{m}: {d}" for m, d in line["decisions"].items())
        print(f"night {line['night']}: {line['seconds']:.0f}s  ({decisions})")
    if summary.get("unchanged_night_share") is not None:
        print(f"last night took {summary['unchanged_night_share']:.0%} of the first night's time")


def build_summary(settings: Settings, models: list[str]) -> dict:
    """The latest MLflow run of each pipeline and what it registered, read back from MLflow."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from mlops_onnx import tracking

    tracking.configure(settings)
    client = MlflowClient()
    summary = {
        "mlops_home": str(settings.home),
        "tracking_uri": settings.tracking_uri,
        "data_source": settings.data_source,
        "models": {},
    }
    for model in models:
        pipeline = PIPELINES[model]
        night = tracking.newest_night(client, model)
        if night is None:
            summary["models"][model] = {"dag_id": pipeline.dag_id, "status": "no run found"}
            continue
        candidates = {r.data.tags["architecture"]: candidate_entry(r) for r in tracking.night_candidates(client, night)}
        metrics, tags = night.data.metrics, night.data.tags
        chosen = tags.get("chosen_architecture") or next(iter(candidates), None)
        entry = {
            "dag_id": pipeline.dag_id,
            "mlflow_run_id": night.info.run_id,
            "airflow_run_id": tags.get("airflow_run_id"),
            "data_source": tags.get("data_source"),
            "data_hash": tags.get("data_hash"),
            "data_rows": {
                k.removeprefix("data_rows_"): int(v) for k, v in metrics.items() if k.startswith("data_rows_")
            },
            "validation": tags.get("validation_status", "not run"),
            "data_files": {
                k.removeprefix("data_files_"): int(v) for k, v in metrics.items() if k.startswith("data_files_")
            },
            **(candidates.get(chosen) or EMPTY_CANDIDATE),
            "chosen_architecture": tags.get("chosen_architecture"),
            "candidates": candidates,
            "task_seconds": night_task_seconds(metrics, candidates),
            "peak_rss_mb": peak_rss_mb(metrics),
            "gate": tags.get("gate_status", "not reached"),
            "gate_reason": tags.get("gate_reason"),
            "promotion_decision": tags.get("promotion_decision"),
            "promotion_reason": tags.get("promotion_reason"),
            "registered_version": tags.get("registered_version"),
        }
        try:
            champion = client.get_model_version_by_alias(model, "champion")
            entry["current_champion_version"] = champion.version
        except MlflowException:
            entry["current_champion_version"] = None
        summary["models"][model] = entry
    return summary


EMPTY_CANDIDATE = {"test_metrics": {}, "parity": {}, "parity_fp32_max_abs_diff": None, "cpu_b1_p50_ms": {}}


def night_task_seconds(metrics: dict, candidates: dict[str, dict]) -> dict[str, float]:
    """The night's own tasks and, under the key `candidates`, every candidate's task time added up:
    `airflow dags test` runs one task at a time, so the candidates' tasks follow each other. (A scheduler
    with free slots runs them side by side; each candidate's own times stay in its summary entry.)"""
    total = sum(sum(c["task_seconds"].values()) for c in candidates.values())
    return {**task_seconds(metrics), "candidates": round(total, 2)}


def task_seconds(metrics: dict) -> dict[str, float]:
    return {k.removeprefix("task_seconds_"): round(v, 2) for k, v in metrics.items() if k.startswith("task_seconds_")}


def peak_rss_mb(metrics: dict) -> dict[str, float]:
    return {k.removeprefix("peak_rss_mb_"): round(v, 1) for k, v in metrics.items() if k.startswith("peak_rss_mb_")}


def candidate_entry(run) -> dict:
    """One candidate's run of the night: its metrics, parity, latency, task times and what became of it."""
    from mlops_onnx.parity import passed_parity

    metrics, tags = run.data.metrics, run.data.tags
    return {
        "mlflow_run_id": run.info.run_id,
        "candidate_status": tags.get("candidate_status"),
        "test_metrics": {k: metrics[k] for k in HEADLINE_METRICS if k in metrics},
        "parity_fp32_max_abs_diff": metrics.get("parity_fp32_max_abs_diff"),
        "parity": passed_parity(metrics),
        "cpu_b1_p50_ms": {
            k.removeprefix("bench_cpu_").removesuffix("_b1_p50_ms"): v
            for k, v in metrics.items()
            if k.startswith("bench_cpu_") and k.endswith("_b1_p50_ms")
        },
        "task_seconds": task_seconds(metrics),
        "peak_rss_mb": peak_rss_mb(metrics),
        "gpu": tags.get("bench_gpu_status", "not run"),
        "fingerprint": tags.get("fingerprint"),
        "promotion_decision": tags.get("promotion_decision"),
        "promotion_reason": tags.get("promotion_reason"),
        "alias": tags.get("registered_alias"),
        "serving_variant": tags.get("serving_variant"),
    }


def add_airflow_overhead(summary: dict, dag_seconds: dict[str, float]) -> dict:
    """Wall time of each `airflow dags test` against the time spent inside task bodies (the
    `task_seconds_<stage>` metrics): the rest is Airflow's (process start, DAG parsing, scheduling
    loop, XCom and metadata DB writes)."""
    totals = {"dag_seconds": 0.0, "task_seconds": 0.0}
    for model, seconds in dag_seconds.items():
        entry = summary["models"].get(model, {})
        entry["dag_seconds"] = round(seconds, 1)
        tasks = sum((entry.get("task_seconds") or {}).values())
        if not tasks:
            continue
        entry["airflow_overhead_seconds"] = round(seconds - tasks, 1)
        entry["airflow_overhead_share"] = round((seconds - tasks) / seconds, 3)
        totals["dag_seconds"] += seconds
        totals["task_seconds"] += tasks
    if totals["dag_seconds"]:
        overhead = totals["dag_seconds"] - totals["task_seconds"]
        summary["airflow_overhead"] = {
            "dag_seconds": round(totals["dag_seconds"], 1),
            "task_seconds": round(totals["task_seconds"], 1),
            "overhead_seconds": round(overhead, 1),
            "overhead_share": round(overhead / totals["dag_seconds"], 3),
        }
    return summary


def print_summary(summary: dict) -> None:
    print("\n" + "=" * 78 + "\nNIGHTLY SUMMARY\n" + "=" * 78)
    for model, e in summary["models"].items():
        print(f"\n{model}  ({e['dag_id']})")
        if "mlflow_run_id" not in e:
            print(f"  {e['status']}")
            continue
        rows = ", ".join(f"{k}={v}" for k, v in (e["data_rows"] or e["data_files"]).items())
        print(f"  data         : {e['data_source']}, hash {str(e['data_hash'])[:12]}, {rows}")
        print(f"  validation   : {e['validation']}")
        for architecture, c in e["candidates"].items():
            shown = ", ".join(f"{k}={v:.4f}" for k, v in c["test_metrics"].items())
            spent = sum(c["task_seconds"].values())
            print(f"  candidate    : {architecture}: {c['candidate_status']}, {spent:.0f}s of tasks; {shown}")
        print(f"  chosen       : {e['chosen_architecture'] or 'none'}")
        print("  test metrics : " + ", ".join(f"{k}={v:.4f}" for k, v in e["test_metrics"].items()))
        parity = ", ".join(f"{k}={'pass' if ok else 'FAIL'}" for k, ok in e["parity"].items())
        diff = e["parity_fp32_max_abs_diff"]
        print(f"  parity       : {parity}" + (f" (fp32 max abs diff {diff:.2e})" if diff is not None else ""))
        if e["cpu_b1_p50_ms"]:
            print("  CPU p50 b=1  : " + ", ".join(f"{k} {v:.3f} ms" for k, v in sorted(e["cpu_b1_p50_ms"].items())))
        print(f"  GPU          : {e.get('gpu', 'not run')}")
        gate = e["gate"] + (f" ({e['gate_reason']})" if e.get("gate_reason") else "")
        print(f"  gate         : {gate}")
        if e.get("promotion_reason"):
            print(f"  decision     : {e['promotion_decision']}: {e['promotion_reason']}")
        if e["registered_version"]:
            print(
                f"  registered   : {model} v{e['registered_version']} @{e.get('alias')}, "
                f"serving variant {e.get('serving_variant')}"
            )
        print(
            f"  champion     : v{e['current_champion_version']}"
            if e["current_champion_version"]
            else "  champion     : none"
        )
        if "airflow_overhead_seconds" in e:
            print(
                f"  time         : DAG {e['dag_seconds']:.0f}s, tasks {sum(e['task_seconds'].values()):.0f}s, "
                f"Airflow overhead {e['airflow_overhead_seconds']:.0f}s ({e['airflow_overhead_share']:.0%})"
            )
    if "airflow_overhead" in summary:
        o = summary["airflow_overhead"]
        print(
            f"\nAirflow overhead (time outside task bodies): {o['overhead_seconds']:.0f}s of {o['dag_seconds']:.0f}s "
            f"({o['overhead_share']:.0%})"
        )


def run_rollback(model: str, reason: str, to: str | None, by: str | None) -> int:
    from mlops_onnx.champion import RollbackError, rollback

    try:
        done = rollback(model, reason, get_settings(), to=to, by=by)
    except RollbackError as exc:
        print(f"rollback refused, nothing moved: {exc}", file=sys.stderr)
        return 1
    print(f"{done.sentence()} (MLflow run {done.run_id})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlops-onnx")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run every nightly DAG end to end through Airflow, then summarise")
    demo.add_argument("models", nargs="*", default=list(PIPELINES), help="models to run (default: all)")
    demo.add_argument(
        "--nights", type=int, default=2, help="run every DAG this many times (night 2 on unchanged data skips training)"
    )
    demo.add_argument("--summary", type=Path, default=SUMMARY_PATH, help="where to write the summary (JSON)")
    summary = sub.add_parser("summary", help="print the summary of the latest runs from MLflow")
    summary.add_argument("models", nargs="*", default=list(PIPELINES))
    sub.add_parser("airflow-env", help="print the Airflow environment variables for this MLOPS_HOME")
    sub.add_parser("pools", help="create the Airflow pools the DAGs use in the configured Airflow (idempotent)")
    back = sub.add_parser("rollback", help="move a model's champion alias back (to the previous champion by default)")
    back.add_argument("model", choices=list(PIPELINES))
    back.add_argument("--to", help="the version to make champion (default: the one the champion displaced)")
    back.add_argument("--reason", required=True, help="why: recorded on both versions and on a run")
    back.add_argument("--by", help="who (default: the OS user)")
    args = parser.parse_args(argv)
    if args.command == "rollback":
        return run_rollback(args.model, args.reason, args.to, args.by)
    if args.command == "demo":
        return run_demo(args.models, args.nights, args.summary)
    if args.command == "pools":
        create_pools(dict(os.environ))
        return 0
    if args.command == "summary":
        print_summary(build_summary(get_settings(), args.models))
        return 0
    env = airflow_environment(get_settings())
    for key in sorted(k for k in env if k.startswith(("AIRFLOW_", "AIRFLOW__", "MLOPS_", "MLFLOW_"))):
        print(f"export {key}={env[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

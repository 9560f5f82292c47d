"""The benchmark's outputs: `benchmark.json` and `benchmark.md`, PNG charts, the docs' table, one MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

from mlops_onnx.benchmarks.report import markdown, readme_table, short_label, subject_key, targets, update_readme


def charts(report: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    subjects = [s for s in report["models"] if any(subject_key(r) == s for r in report["rows"])]
    if not subjects:
        return paths
    fig, axes = _panels(plt, len(subjects))
    for ax, subject in zip(axes, subjects, strict=False):
        rows = [r for r in report["rows"] if subject_key(r) == subject and r["batch"] == 1]
        names = [f"{r['variant'].replace('native_', 'n:').replace('onnx_', '')}\n{short_label(r)}" for r in rows]
        ax.bar(
            names,
            [r["p50_ms"] for r in rows],
            color=["#999" if r["variant"].startswith("native") else "#2a7" for r in rows],
        )
        ax.set_yscale("log")
        ax.set_title(f"{subject}: p50 latency, batch 1", fontsize=9)
        ax.set_ylabel("ms (log)")
        ax.tick_params(axis="x", labelsize=7, rotation=60)
    fig.tight_layout()
    paths.append(out_dir / "benchmark_latency_b1.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    fig, axes = _panels(plt, len(subjects))
    for ax, subject in zip(axes, subjects, strict=False):
        series: dict[str, list[tuple[int, float]]] = {}
        for r in report["rows"]:
            if subject_key(r) == subject:
                key = f"{r['variant']} ({short_label(r)})"
                series.setdefault(key, []).append((r["batch"], r["throughput_per_s"]))
        for key, points in series.items():
            ax.plot(*zip(*sorted(points), strict=True), marker="o", label=key)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{subject}: throughput", fontsize=9)
        ax.set_xlabel("batch")
        ax.set_ylabel("items/s (log)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    paths.append(out_dir / "benchmark_throughput.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def _panels(plt, count: int, per_row: int = 3):
    """A figure with one panel per measured architecture, `per_row` to a row; the panels left over hidden."""
    rows, columns = -(-count // per_row), min(count, per_row)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4 * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def log_to_mlflow(report: dict, files: list[Path]) -> str | None:
    import mlflow

    from mlops_onnx import tracking
    from mlops_onnx.settings import get_settings

    tracking.configure(get_settings())
    # The experiment by id, not mlflow.set_experiment: that sets a process-wide default (and MLFLOW_EXPERIMENT_ID)
    # every later run of this process would inherit.
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("benchmarks")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("benchmarks")
    metrics = {}
    for r in report["rows"]:
        key = f"{_metric_prefix(r)}.{r['variant']}.{short_label(r, '.')}.b{r['batch']}"
        metrics |= {
            f"{key}.p50_ms": r["p50_ms"],
            f"{key}.p99_ms": r["p99_ms"],
            f"{key}.throughput_per_s": r["throughput_per_s"],
            f"{key}.peak_rss_mb": r["peak_rss_mb"] or 0.0,
        }
    for t in report["targets"]:
        if t.get("ratio") is not None:
            kind = "speedup" if "native" in t["target"] else "serving_vs_fp32"
            metrics[f"target.{_metric_prefix(t)}.{kind}"] = t["ratio"]
    tags = {
        f"version.{key.replace('/', '.')}": str(info.get("registered_version") or "not registered")
        for key, info in report["models"].items()
    }
    tags |= {"cpu_model": report["machine"]["cpu_model"][:250], "gpu": str(report["machine"].get("gpu"))[:250]}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"bench-{report['generated_at']}", tags=tags) as run:
        mlflow.log_params(report["settings"])
        mlflow.log_metrics(metrics)
        for path in files:
            mlflow.log_artifact(str(path))
    return run.info.run_id


def _metric_prefix(entry: dict) -> str:
    """`<model>.<architecture>`: a row's, a target's or a model entry's part of an MLflow metric or tag name."""
    return subject_key(entry).replace("/", ".")


def report_main(report: dict, out_dir: Path, readme: bool, mlflow_log: bool) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    report["targets"] = targets(report)
    json_path = out_dir / "benchmark.json"
    json_path.write_text(json.dumps(report, indent=2))
    md_path = out_dir / "benchmark.md"
    md_path.write_text(markdown(report))
    files = [json_path, md_path, *charts(report, out_dir)]
    if readme and update_readme(readme_table(report)):
        print("[bench] performance table of docs/performance.md updated", flush=True)
    if mlflow_log:
        run_id = log_to_mlflow(report, files)
        print(f"[bench] logged to MLflow experiment 'benchmarks', run {run_id}", flush=True)
    for t in report["targets"]:
        print(
            f"[bench] target {subject_key(t)}: {t['target']}: {t.get('ratio', '–')} "
            f"{ {True: 'met', False: 'MISSED', None: 'not measured'}[t['met']] } ({t['detail']})",
            flush=True,
        )
    print(f"[bench] wrote {', '.join(str(p) for p in files)}", flush=True)
    return report

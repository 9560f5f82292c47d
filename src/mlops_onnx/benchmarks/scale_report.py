"""`make scale`'s arithmetic and report: one size's night summary as rows, the fitted exponents, the
projected full-size night, the learning curves, the merge with earlier sizes, Markdown and a plot.
`benchmarks.scale` runs the nights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mlops_onnx.catalog import PIPELINES

NIGHT_BUDGET_SECONDS = 3600.0
SUPERLINEAR = 1.15  # an exponent above this (with at least 3 sizes, or a size-1 measurement) is flagged
NIGHT_STAGE = "-"  # the `candidate` of the night's own stages (ingest, validate, candidates, gate_and_register)
FLAT = 0.005  # a learning curve is flat from the smallest size within 0.5 % (relative) of its best score
QUALITY = {  # task -> the test metrics the report shows at every size; the first decides the learning curve
    "fashion": ("test_accuracy",),
    "fake_news": ("test_f1", "liar_roc_auc"),
    "stocks": ("test_mase", "baseline_naive_test_mase", "baseline_drift_test_mase", "baseline_ets_test_mase"),
}


def rows_of(size: float, summary: dict) -> tuple[list[dict], dict, dict]:
    """The report's rows of one size's night, its `nights` entry and its test metrics per task and candidate."""
    rows, tasks, quality = [], {}, {}
    for model, entry in summary["models"].items():
        task = PIPELINES[model].task
        data_rows = int(sum(entry.get("data_rows", {}).values()))
        tasks[task] = entry.get("dag_seconds")
        peaks = entry.get("peak_rss_mb", {})
        stages = [(NIGHT_STAGE, s, sec, peaks.get(s)) for s, sec in entry["task_seconds"].items()]
        for architecture, candidate in entry.get("candidates", {}).items():
            peaks = candidate.get("peak_rss_mb", {})
            stages += [(architecture, s, sec, peaks.get(s)) for s, sec in candidate["task_seconds"].items()]
            quality[f"{task}/{architecture}"] = {
                k: v for k, v in candidate.get("test_metrics", {}).items() if k in QUALITY.get(task, ())
            }
        for candidate, stage, seconds, peak in stages:
            if candidate == NIGHT_STAGE and stage == "candidates":  # the summary's sum of the candidates' stages
                continue
            rows.append(
                {
                    "size": size,
                    "task": task,
                    "candidate": candidate,
                    "stage": stage,
                    "rows": data_rows,
                    "seconds": seconds,
                    "peak_rss_mb": peak,
                }
            )
    night = {"size": size, "seconds": round(sum(s for s in tasks.values() if s), 1), "tasks": tasks}
    if summary.get("failed"):
        night["failed"] = True
    return rows, night, quality


def fit_exponent(points: list[tuple[float, float]]) -> float | None:
    """k in seconds ∝ rows^k: the least-squares slope on log–log, from two or more distinct row counts."""
    points = [(r, s) for r, s in points if r and s and r > 0 and s > 0]
    if len({r for r, _ in points}) < 2:
        return None
    x, y = np.log([r for r, _ in points]), np.log([s for _, s in points])
    return float(np.polyfit(x, y, 1)[0])


def exponents(rows: list[dict]) -> dict[str, dict[str, float | None]]:
    """Per task, per `candidate/stage` (night stages by their name): the fitted exponent k."""
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for row in rows:
        key = row["stage"] if row["candidate"] == NIGHT_STAGE else f"{row['candidate']}/{row['stage']}"
        groups.setdefault((row["task"], key), []).append((row["rows"], row["seconds"]))
    fitted: dict[str, dict[str, float | None]] = {}
    for (task, key), points in sorted(groups.items()):
        fitted.setdefault(task, {})[key] = fit_exponent(points)
    return fitted


def project(rows: list[dict], full_rows: dict[str, int]) -> dict[str, dict]:
    """Each task's night at full size: measured when size 1 ran; else every stage extrapolated from its
    largest measured size along its own fitted exponent (1 for a stage seen at one size only); not
    projected (`seconds` None) from a single size, which says nothing about growth."""
    fitted = exponents(rows)
    projected: dict[str, dict] = {}
    for task in sorted({r["task"] for r in rows}):
        task_rows = [r for r in rows if r["task"] == task]
        largest = max(r["size"] for r in task_rows)
        measured = largest == 1
        if not measured and len({r["size"] for r in task_rows}) < 2:
            projected[task] = {"seconds": None, "from_size": largest, "measured": False}
            continue
        total = 0.0
        for row in (r for r in task_rows if r["size"] == largest):
            key = row["stage"] if row["candidate"] == NIGHT_STAGE else f"{row['candidate']}/{row['stage']}"
            k = 1.0 if measured else fitted[task].get(key) or 1.0
            target = full_rows.get(task) or row["rows"] / largest
            total += row["seconds"] * (target / row["rows"]) ** k if row["rows"] else row["seconds"]
        projected[task] = {"seconds": round(total, 1), "from_size": largest, "measured": measured}
    return projected


def superlinear(fitted: dict[str, dict[str, float | None]]) -> list[str]:
    return [
        f"{task} {stage}: k = {k:.2f}"
        for task, stages in fitted.items()
        for stage, k in stages.items()
        if k is not None and k > SUPERLINEAR
    ]


def merge(
    previous: dict | None, sizes: list[float], rows: list[dict], nights: list[dict], quality: dict, changed: list[dict]
) -> dict:
    """The report of these sizes, with every other size kept from the previous report."""
    previous = previous or {}
    kept = [s for s in previous.get("nights", []) if not any(math.isclose(s["size"], n) for n in sizes)]
    kept_sizes = {s["size"] for s in kept}
    return {
        "rows": [r for r in previous.get("rows", []) if r["size"] in kept_sizes] + rows,
        "nights": sorted(kept + nights, key=lambda n: n["size"]),
        "quality": {k: v for k, v in previous.get("quality", {}).items() if float(k) in kept_sizes}
        | {f"{s:g}": q for s, q in quality.items()},
        "changed_nights": sorted(
            [c for c in previous.get("changed_nights", []) if c["size"] in kept_sizes] + changed,
            key=lambda c: c["size"],
        ),
    }


def full_size_rows(rows: list[dict]) -> dict[str, int]:
    """Each task's data rows at size 1, scaled from its largest measured size (the generator scales linearly)."""
    out = {}
    for task in {r["task"] for r in rows}:
        largest = max((r for r in rows if r["task"] == task), key=lambda r: r["size"])
        out[task] = round(largest["rows"] / largest["size"])
    return out


def learning_curves(quality: dict, full_rows: dict[str, int]) -> dict[str, dict]:
    """Per `task/candidate`: its first QUALITY metric at each size and where the curve goes flat (the
    smallest size within FLAT of the best score), with the data rows there: the cap the curve supports."""
    curves: dict[str, dict] = {}
    for size, entries in sorted(quality.items(), key=lambda kv: float(kv[0])):
        for name, metrics in entries.items():
            metric = QUALITY[name.split("/")[0]][0]
            if metric in metrics:
                curves.setdefault(name, {"metric": metric, "points": {}})["points"][size] = metrics[metric]
    for name, curve in curves.items():
        higher = curve["metric"] != "test_mase"
        scores = curve["points"]
        best = max(scores.values()) if higher else min(scores.values())
        flat = next(s for s, v in scores.items() if abs(v - best) <= FLAT * abs(best))
        curve["flat_from_size"] = float(flat)
        curve["flat_from_rows"] = round(float(flat) * full_rows.get(name.split("/")[0], 0))
        curve["best_is_largest"] = float(flat) == max(float(s) for s in scores)
    return curves


def finish(report: dict, machine: dict, code_version: str = "") -> dict:
    fitted = exponents(report["rows"])
    projected = project(report["rows"], full_size_rows(report["rows"]))
    seconds = [p["seconds"] for p in projected.values()]
    night = None if None in seconds else round(sum(seconds), 1)
    peaks = {}
    for row in report["rows"]:
        if row["peak_rss_mb"] is not None and row["size"] == max(r["size"] for r in report["rows"]):
            peaks[row["task"]] = max(peaks.get(row["task"], 0.0), row["peak_rss_mb"])
    return {
        **report,
        "exponents": fitted,
        "projection": {"tasks": projected, "night_seconds": night, "budget_seconds": NIGHT_BUDGET_SECONDS},
        "faster_than_data": superlinear(fitted),
        "largest_size_peak_rss_mb": peaks,
        "learning_curves": learning_curves(report["quality"], full_size_rows(report["rows"])),
        "machine": machine,
        "code_version": code_version or report.get("code_version", ""),
    }


def markdown(report: dict) -> str:
    lines = ["# `make scale`: one night's cost against the data's size", ""]
    machine = report["machine"]
    lines += [
        f"Machine: {machine['cpu_model']}, {machine['cpu_cores']} cores; code {report['code_version'][:12]}. "
        "Written by `make scale`.",
        "",
    ]
    tasks = sorted(report["projection"]["tasks"])
    lines += ["## Nights", "", "| size | night (s) | " + " | ".join(tasks) + " | code |"]
    lines.append("|---|---|" + "---|" * len(tasks) + "---|")
    for night in report["nights"]:
        cells = " | ".join("–" if night["tasks"].get(t) is None else f"{night['tasks'][t]:.0f}" for t in tasks)
        size = f"{night['size']:g}" + (" (a DAG failed)" if night.get("failed") else "")
        lines.append(f"| {size} | {night['seconds']:.0f} | {cells} | {night.get('code_version', '')[:12]} |")
    projection = report["projection"]
    if projection["night_seconds"] is None:
        headline = "Full-size night (size 1): not projected: a task was measured at one size only (two are needed)."
    else:
        verdict = "within" if projection["night_seconds"] <= projection["budget_seconds"] else "OVER"
        headline = (
            f"Full-size night (size 1): **{projection['night_seconds'] / 60:.0f} min**, {verdict} the "
            f"{projection['budget_seconds'] / 60:.0f}-minute budget: "
            + ", ".join(f"{t} {p['seconds'] / 60:.1f} min ({_how(p)})" for t, p in sorted(projection["tasks"].items()))
            + "."
        )
    lines += [
        "",
        headline,
        "",
        "## Where the cost grows faster than the data",
        "",
    ]
    lines += [f"- {item}" for item in report["faster_than_data"]] or ["- nowhere (every fitted k ≤ 1.15)"]
    lines += ["", "## A changed night", ""]
    lines += [
        f"- size {c['size']:g}: {c['new_articles']} new articles ({c['new_share']:.0%} asked), news night "
        f"{c['seconds']:.0f} s = "
        f"{c['share_of_full_night']:.0%} of the full news night ({c['full_night_seconds']:.0f} s); {c['decision']}"
        for c in report.get("changed_nights", [])
    ] or ["- not measured"]
    lines += ["", "## Exponents (cost ∝ rows^k)", "", "| task | stage | k |", "|---|---|---|"]
    for task, stages in report["exponents"].items():
        lines += [f"| {task} | {stage} | {'n/a' if k is None else f'{k:.2f}'} |" for stage, k in stages.items()]
    lines += ["", "## Peak RSS at the largest size (MB)", ""]
    lines += [
        "Of the `airflow dags test` process that runs a night's tasks one after another, keeping what earlier",
        "tasks imported (TensorFlow, torch): an upper bound of each task's own, which a scheduler runs in a",
        "process of its own.",
        "",
    ]
    lines += [f"- {task}: {peak:.0f}" for task, peak in sorted(report["largest_size_peak_rss_mb"].items())]
    lines += ["", "## Learning curves: where more data stops paying", ""]
    for name, curve in sorted(report["learning_curves"].items()):
        points = ", ".join(f"{v:.4f} at {float(s):g}" for s, v in curve["points"].items())
        verdict = (
            "still improving at the largest size: no cap"
            if curve["best_is_largest"]
            else f"flat from size {curve['flat_from_size']:g} ({curve['flat_from_rows']:,} data rows)"
        )
        lines.append(f"- {name} {curve['metric']}: {points}; {verdict}")
    lines += ["", "## Test metrics by size", "", "| size | task/candidate | metrics |", "|---|---|---|"]
    for size, entries in sorted(report["quality"].items(), key=lambda kv: float(kv[0])):
        for name, metrics in sorted(entries.items()):
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            lines.append(f"| {size} | {name} | {shown} |")
    lines += ["", "## Every stage", "", "| size | task | candidate | stage | rows | seconds | peak RSS (MB) |"]
    lines.append("|---|---|---|---|---|---|---|")
    for r in sorted(report["rows"], key=lambda r: (r["task"], r["candidate"], r["stage"], r["size"])):
        peak = "" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"
        cells = (f"{r['size']:g}", r["task"], r["candidate"], r["stage"], str(r["rows"]), f"{r['seconds']:.1f}", peak)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _how(projected: dict) -> str:
    return "measured" if projected["measured"] else f"projected from size {projected['from_size']:g}"


def plot(report: dict, path: Path) -> Path:
    """Each task's seconds (its stages and candidates added up) and the night's, against the size, log–log;
    the projected full-size night as hollow markers and the budget as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    projected = report["projection"]["tasks"]
    for task in sorted({r["task"] for r in report["rows"]}):
        totals: dict[float, float] = {}
        for r in (r for r in report["rows"] if r["task"] == task):
            totals[r["size"]] = totals.get(r["size"], 0.0) + r["seconds"]
        sizes = sorted(totals)
        (line,) = ax.plot(sizes, [totals[s] for s in sizes], marker="o", label=task)
        if projected[task]["seconds"] is not None and not projected[task]["measured"]:
            ax.plot(
                [sizes[-1], 1.0], [totals[sizes[-1]], projected[task]["seconds"]], linestyle=":", color=line.get_color()
            )
            ax.plot([1.0], [projected[task]["seconds"]], marker="o", fillstyle="none", color=line.get_color())
    ax.axhline(
        report["projection"]["budget_seconds"], color="gray", linestyle="--", linewidth=0.8, label="night budget"
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("size (fraction of the Kaggle datasets)")
    ax.set_ylabel("seconds of the task's stages")
    ax.set_title("One night's cost against the data (make scale); hollow: projected")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

"""`make scale`: what one night costs as the data grows, measured, not assumed.

For each size (a fraction of the real Kaggle sizes: `MLOPS_SYNTHETIC_SIZE=kaggle` at
`MLOPS_SYNTHETIC_SCALE=size`), one night of every task runs with the default candidates through Airflow
(`mlops_onnx.cli demo --nights 1`) in a home of its own (`<MLOPS_HOME>/scale/size-<size>`, emptied
first except its cache of generated data). Every stage already logs its wall time and peak RSS to
MLflow (`task_seconds_<stage>`, `peak_rss_mb_<stage>`); the demo's summary reads them back, and this
module runs the nights and `scale_report` turns them into rows (size × task × candidate × stage), fits
cost ∝ rows^k per task and stage (least squares on log–log), projects the full-size night, and names the
stages whose cost grows faster than the data. Sizes measured earlier stay in `reports/scale.json`: a
full-size night run on its own joins the curve of the small ones.

After each size's night, a changed fake-news night: the same articles plus `--changed` (1 %) new ones,
read through the `local` source from a copy in Kaggle's layout, so the night retrains on changed data
(what a nightly user meets), and its cost is reported against the full news night's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mlops_onnx.airflow_env import REPO_ROOT
from mlops_onnx.benchmarks.scale_report import finish, markdown, merge, plot, rows_of
from mlops_onnx.catalog import PIPELINES
from mlops_onnx.settings import get_settings

REPORT_DIR = REPO_ROOT / "reports"
DEFAULT_SIZES = (1 / 16, 1 / 8, 1 / 4)


def size_env(size: float, home: Path) -> dict[str, str]:
    """The environment of one size's night: synthetic Kaggle-sized data, every default candidate."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLOPS_STORAGE_URL")}
    env |= {
        "MLOPS_HOME": str(home),
        "MLOPS_DATA_SOURCE": "synthetic",
        "MLOPS_SYNTHETIC_SIZE": "kaggle",
        "MLOPS_SYNTHETIC_SCALE": f"{size:g}",
        "MLOPS_PROFILE": get_settings().profile,
    }
    for pipeline in PIPELINES.values():  # synthetic data would otherwise train the first candidate only
        key = f"MLOPS_CANDIDATES_{pipeline.task.upper()}"
        env.setdefault(key, ",".join(c.architecture for c in pipeline.candidates if c.by_default))
    return env


def size_home(root: Path, size: float) -> Path:
    """The size's own MLOPS_HOME, emptied but for its cache of generated data."""
    home = root / f"size-{size:g}"
    if home.exists():
        for entry in home.iterdir():
            if entry.name != "cache":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    home.mkdir(parents=True, exist_ok=True)
    return home


def run_night(label: str, home: Path, env: dict[str, str], models: list[str]) -> dict:
    """One night (`cli demo --nights 1`) of `models` in `home`; the demo's summary of it. Progress lines go
    to the console, everything to `<home>/<label>.log`."""
    summary_path = home / f"{label}-summary.json"
    command = [sys.executable, "-m", "mlops_onnx.cli", "demo", "--nights", "1", "--summary", str(summary_path), *models]
    started = time.perf_counter()
    with (
        (home / f"{label}.log").open("w") as log,
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as night,
    ):
        for line in night.stdout:
            log.write(line)
            if line.startswith(("===", "FAILED")) or " finished in " in line or " failed" in line or "GATE" in line:
                elapsed = time.perf_counter() - started
                print(f"[scale {label} +{elapsed:5.0f}s] {line.rstrip()}", flush=True)
    if not summary_path.is_file():
        raise RuntimeError(f"{label}: the night wrote no summary (exit {night.returncode}); see {home / label}.log")
    summary = json.loads(summary_path.read_text())
    if night.returncode != 0:  # a DAG failed: its stages that ran are still measured, and the report says so
        summary["failed"] = True
        print(f"[scale {label}] a DAG failed (exit {night.returncode}); see {home / label}.log", flush=True)
    return summary


def changed_news(home: Path, size: float, share: float) -> tuple[Path, int]:
    """A folder in Kaggle's layout (the `local` source's) with this size's articles and about `share` new
    ones appended to each file (another seed; at least 20 a file), and its LIAR files; and how many were
    appended."""
    from types import SimpleNamespace

    from mlops_onnx.datasets import FAKE_NEWS, LIAR
    from mlops_onnx.sources.synthetic_news import generate_news

    cache = home / "cache" / "synthetic"
    news = next(cache.glob(f"{FAKE_NEWS.name}-kagglex{size:g}-*"))
    liar = next(cache.glob(f"{LIAR.name}-kagglex{size:g}-*"))
    folder = home / "changed"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / FAKE_NEWS.folder).mkdir(parents=True)
    shutil.copytree(liar, folder / LIAR.folder, ignore=shutil.ignore_patterns(".*"))
    extra = home / "changed-extra"
    shutil.rmtree(extra, ignore_errors=True)
    extra.mkdir()
    more = SimpleNamespace(synthetic_size="kaggle", synthetic_scale=size * share)
    added = sum(generate_news(extra, np.random.default_rng(7919), more)["rows"].values())
    for name in FAKE_NEWS.file_patterns:
        new_rows = (extra / name).read_bytes().split(b"\n", 1)[1]  # without the header
        (folder / FAKE_NEWS.folder / name).write_bytes((news / name).read_bytes() + new_rows)
    shutil.rmtree(extra)
    return folder, added


def changed_night(size: float, home: Path, share: float, full: dict) -> dict:
    """The fake-news night on this size's articles plus `share` new ones, against the full news night."""
    model = next(m for m, p in PIPELINES.items() if p.task == "fake_news")
    folder, added = changed_news(home, size, share)
    env = size_env(size, home) | {"MLOPS_DATA_SOURCE": "local", "MLOPS_DATA_DIR": str(folder)}
    summary = run_night("changed", home, env, [model])["models"][model]
    full_seconds = full["models"][model]["dag_seconds"]
    return {
        "size": size,
        "task": "fake_news",
        "new_share": share,
        "new_articles": added,
        "seconds": summary["dag_seconds"],
        "full_night_seconds": full_seconds,
        "share_of_full_night": round(summary["dag_seconds"] / full_seconds, 3),
        "decision": summary.get("promotion_decision"),
        "candidates": {a: c["task_seconds"] for a, c in summary.get("candidates", {}).items()},
    }


def write_report(
    out: Path, size: float, rows: list[dict], night: dict, quality: dict, changed: list[dict], machine: dict, code: str
) -> dict:
    """Merge one size's measurements into `out`/scale.json (replacing that size's earlier ones) and write
    scale.md and scale.png from the result."""
    json_path = out / "scale.json"
    previous = json.loads(json_path.read_text()) if json_path.is_file() else None
    report = finish(merge(previous, [size], rows, [night], {size: quality}, changed), machine, code)
    out.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, default=str))
    (out / "scale.md").write_text(markdown(report))
    plot(report, out / "scale.png")
    print(f"[scale] size {size:g} merged into {json_path}, scale.md and scale.png", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    from mlops_onnx.benchmarks.timing import machine_info
    from mlops_onnx.tracking import code_version

    parser = argparse.ArgumentParser(prog="make scale", description=__doc__.split("\n\n")[0])
    default = ",".join(f"{s:g}" for s in DEFAULT_SIZES)
    parser.add_argument("--sizes", default=default, help="fractions of Kaggle's sizes, e.g. 1 or 0.0625,0.125")
    parser.add_argument("--out", type=Path, default=REPORT_DIR)
    parser.add_argument("--changed", type=float, default=0.01, help="new articles of the changed night (0: none)")
    parser.add_argument("models", nargs="*", default=list(PIPELINES))
    args = parser.parse_args(argv)
    sizes = [float(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or any(not 0 < s <= 1 for s in sizes):
        parser.error(f"--sizes {args.sizes!r}: fractions in (0, 1] expected")
    root = get_settings().home / "scale"
    machine = machine_info(os.cpu_count() or 1)
    for size in sizes:
        print(f"[scale] size {size:g} of Kaggle's: one night of {', '.join(args.models)}", flush=True)
        home = size_home(root, size)
        summary = run_night(f"{size:g}", home, size_env(size, home), args.models)
        rows, night, quality = rows_of(size, summary)
        night["code_version"] = code_version()  # sizes measured on other days may have run other code
        print(f"[scale] size {size:g}: night {night['seconds']:.0f}s {night['tasks']}", flush=True)
        changed = []
        if args.changed and "fake_news" in night["tasks"]:
            changed.append(changed_night(size, home, args.changed, summary))
            print(f"[scale] size {size:g}: changed news night {changed[-1]['seconds']:.0f}s", flush=True)
        # after every size: a run stopped later keeps what it measured
        report = write_report(args.out, size, rows, night, quality, changed, machine, code_version())
    print(markdown(report).split("## Where")[0], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

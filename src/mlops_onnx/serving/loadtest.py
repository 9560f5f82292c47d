"""`make loadtest`: the fake-news API under concurrent clients, on the champion of MLOPS_HOME's registry.

Starts the API (uvicorn, one worker, on loopback) as a subprocess with this environment's settings, then
for each concurrency level keeps that many clients busy for `--duration` seconds, each posting one article
at a time (articles of the fake-news data in MLOPS_DATA_DIR, else of the synthetic news source), and
writes `reports/loadtest.json` and `reports/loadtest.md`: requests per second, p50/p95/p99 latency,
errors, and the server's peak RSS, per level.

    python -m mlops_onnx.serving.loadtest --duration 20 --concurrency 1,8,32
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mlops_onnx.settings import Settings, get_settings

COLUMNS = ("concurrency", "requests_per_s", "p50_ms", "p95_ms", "p99_ms", "errors", "server_peak_rss_mb")
ARTICLE_CHARS = 5000  # a long article is cut here, as a client would send a page's first screens


def sample_articles(settings: Settings, data_dir: Path | None, count: int = 200) -> list[dict[str, str]]:
    """`count` articles, fake and real alternating: from the Kaggle CSVs under `data_dir`, or generated."""
    from mlops_onnx.datasets import FAKE_NEWS
    from mlops_onnx.sources.synthetic_news import generate_news

    folder = data_dir / FAKE_NEWS.folder if data_dir is not None else None
    if folder is not None and (folder / FAKE_NEWS.file_patterns[0]).is_file():
        return _read_articles(folder, FAKE_NEWS.file_patterns, count)
    with tempfile.TemporaryDirectory(prefix="loadtest-news-") as tmp:
        generate_news(Path(tmp), np.random.default_rng(settings.seed), settings)
        return _read_articles(Path(tmp), FAKE_NEWS.file_patterns, count)


def _read_articles(folder: Path, files: tuple[str, ...], count: int) -> list[dict[str, str]]:
    per_file = []
    for name in files:
        with (folder / name).open(encoding="utf-8", errors="replace", newline="") as handle:
            rows = (r for r in csv.DictReader(handle) if (r.get("text") or "").strip())
            per_file.append(
                [{"title": r.get("title") or "", "text": r["text"][:ARTICLE_CHARS]} for _, r in zip(range(count), rows)]
            )
    return [article for pair in zip(*per_file) for article in pair][:count]


def start_server(port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The API in one uvicorn worker on 127.0.0.1:`port`, on `env`'s settings (default: this environment)."""
    argv = [sys.executable, "-m", "uvicorn", "mlops_onnx.serving.app:app", "--host", "127.0.0.1"]
    return subprocess.Popen([*argv, "--port", str(port), "--log-level", "warning"], env=env)


def wait_ready(base_url: str, server: subprocess.Popen, timeout: float = 180.0) -> dict:
    """The served model (`GET /model`) once `/health` says ok; fails with the server's reason otherwise."""
    import httpx

    deadline, last = time.monotonic() + timeout, "no answer"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the API exited with code {server.returncode} before it was ready")
        try:
            health = httpx.get(f"{base_url}/health", timeout=5)
            if health.status_code == 200:
                return httpx.get(f"{base_url}/model", timeout=5).json()
            last = health.text
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}"
        time.sleep(0.5)
    raise RuntimeError(f"the API was not ready within {timeout:.0f} s: {last}")


def rss_mb(pid: int) -> float:
    import psutil

    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


async def drive(base_url: str, articles: list[dict], concurrency: int, duration: float, server_pid: int) -> dict:
    """`concurrency` clients, each posting one article after the other, for `duration` seconds."""
    import httpx

    latencies, errors, peak = [], 0, rss_mb(server_pid)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        for article in articles[:3]:  # warm the connection pool and the model's first calls
            await client.post("/predict", json=article)
        stop = time.perf_counter() + duration

        async def client_loop(offset: int) -> None:
            nonlocal errors
            index = offset
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    response = await client.post("/predict", json=articles[index % len(articles)])
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
                index += concurrency

        async def sample_rss() -> None:
            nonlocal peak
            while time.perf_counter() < stop:
                peak = max(peak, rss_mb(server_pid))
                await asyncio.sleep(0.2)

        began = time.perf_counter()
        await asyncio.gather(sample_rss(), *(client_loop(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - began
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    return {
        "concurrency": concurrency,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "errors": errors,
        "server_peak_rss_mb": round(peak, 1),
    }


def markdown(report: dict) -> str:
    lines = [
        f"# Load test: {report['model']} v{report['version']} ({report['serving_variant']})",
        "",
        f"One uvicorn worker on 127.0.0.1, {report['duration_s']:g} s per level, one article per request; "
        f"micro-batching {'on' if report['batching'] else 'off'}.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in report["rows"]]
    return "\n".join(lines) + "\n"


def run(duration: float, levels: list[int], out: Path, data_dir: Path | None, port: int | None = None) -> dict:
    from mlops_onnx.catalog import served_model

    settings = get_settings()
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    articles = sample_articles(settings, data_dir)
    server = start_server(port)
    try:
        served = wait_ready(base_url, server)
        rows = [asyncio.run(drive(base_url, articles, level, duration, server.pid)) for level in levels]
    finally:
        server.terminate()
        server.wait(timeout=30)
    report = {
        "model": served.get("name", settings.serve_model or served_model("api")),
        "version": served.get("version"),
        "serving_variant": served.get("serving_variant"),
        "batching": settings.serve_batching,
        "batch_wait_ms": settings.serve_batch_wait_ms,
        "batch_max_items": settings.serve_batch_max_items,
        "duration_s": duration,
        "articles": len(articles),
        "rows": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "loadtest.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "loadtest.md").write_text(markdown(report))
    return report


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per concurrency level")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder of loadtest.json and .md")
    parser.add_argument("--data-dir", type=Path, default=None, help="Kaggle-layout data (default MLOPS_DATA_DIR)")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    report = run(args.duration, levels, args.out, args.data_dir or get_settings().data_dir)
    print(markdown(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

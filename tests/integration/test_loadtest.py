"""`make loadtest`, briefly: the API in a real uvicorn subprocess on a real registered model, driven by
concurrent clients; the report has one row per level with every column, and no request failed."""

import json

import pytest
from conftest import HAS_SHARED_DATA, SHARED_DATA
from serving_support import register

from mlops_onnx.serving import loadtest

pytestmark = pytest.mark.slow  # a real uvicorn subprocess: make test, not make test-fast


def test_loadtest_reports_throughput_latency_and_memory_per_level(settings_env, tmp_path):
    settings = settings_env(MLOPS_SERVE_POLL_SECONDS="0")
    version = register(settings.home, tmp_path / "v1", scale=0.5)
    out = tmp_path / "reports"
    loadtest.main(
        ["--duration", "1.5", "--concurrency", "1,4", "--out", str(out)]
        + (["--data-dir", str(SHARED_DATA)] if HAS_SHARED_DATA else [])
    )
    report = json.loads((out / "loadtest.json").read_text())
    assert (report["model"], report["version"], report["serving_variant"]) == (
        "fake_news_classifier",
        version,
        "int8_dynamic",
    )
    assert [row["concurrency"] for row in report["rows"]] == [1, 4]
    for row in report["rows"]:
        assert list(row) == list(loadtest.COLUMNS)
        assert row["errors"] == 0 and row["requests_per_s"] > 0, row
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] and row["server_peak_rss_mb"] > 50, row
    table = (out / "loadtest.md").read_text()
    assert "| " + " | ".join(loadtest.COLUMNS) + " |" in table and table.count("\n| 4 |") == 1

"""Source failures: Kaggle unreachable, credentials missing or wrong, a download cut off half-way.

Only Kaggle's servers are replaced: the real `kaggle` client talks HTTP to a local server that
answers like Kaggle's API (a zip, a 401, or a connection dropped after half the bytes). By default
the run fails with one line saying what failed; with MLOPS_ON_SOURCE_FAILURE=use_last_good it goes
on with the last snapshot that passed validation, tagged `stale_data=true`. Nothing half-downloaded
is left behind: no snapshot, no staging folder, no partial zip in the cache.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import run_stage
from fault_samples import (
    FASHION,
    fashion_lines,
    pointer,
    publish_last_good,
    snapshots_root,
    write_good,
)
from mlflow import MlflowClient

from mlops_onnx.sources import SourceError
from mlops_onnx.tracking import RunContext

SLUG = "zalando-research/fashionmnist"
KEY = "0123456789abcdef-not-a-real-key"


def dataset_zip(rows: int = 1000) -> bytes:
    """The dataset as Kaggle serves it: one zip with both CSVs (and a file the snapshot leaves out)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("fashion-mnist_train.csv", "\n".join(fashion_lines(rows)) + "\n")
        zf.writestr("fashion-mnist_test.csv", "\n".join(fashion_lines(1200)[:1] + fashion_lines(1200)[1001:]) + "\n")
        zf.writestr("t10k-images-idx3-ubyte", b"\0" * 64)
    return buffer.getvalue()


class KaggleServer(ThreadingHTTPServer):
    """Kaggle's API as the client sees it. `mode`: ok, bad_credentials, interrupted, corrupt."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), KaggleHandler)
        self.mode, self.archive, self.last_modified = "ok", dataset_zip(), "Mon, 01 Jan 2024 00:00:00 GMT"
        self.requests: list[str] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class KaggleHandler(BaseHTTPRequestHandler):
    server: KaggleServer

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        """The API call: like Kaggle, answer with a redirect to the file in storage (or refuse the credentials)."""
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(f"POST {self.path}")
        if self.server.mode == "bad_credentials":
            payload = json.dumps({"code": 401, "message": "Unauthenticated"}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(302)
        self.send_header("Location", "/storage/fashionmnist.zip")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        """The file download (the client's resumes come here too, with a Range header)."""
        self.server.requests.append(f"GET {self.path}")
        mode, body = self.server.mode, self.server.archive
        if mode == "corrupt":  # complete by its length, but not the bytes that were sent
            body = body[: len(body) // 2] + b"\0" * (len(body) - len(body) // 2)
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Last-Modified", self.server.last_modified)
        self.end_headers()
        if mode == "interrupted":  # half the bytes, then the connection drops
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def kaggle(monkeypatch):
    """A fake Kaggle API server; the real client is pointed at it and its retry back-off made instant."""
    import contextlib
    import sys

    import kagglesdk.kaggle_http_client as http_client

    monkeypatch.setenv("KAGGLE_USERNAME", "nightly-bot")
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints help at import time
        from kaggle.api.kaggle_api_extended import KaggleApi
    server = KaggleServer()
    monkeypatch.setattr(http_client, "get_endpoint", lambda env: server.url)
    monkeypatch.setattr(sys.modules[KaggleApi.__module__].time, "sleep", lambda seconds: None)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def night(settings_env, tmp_path):
    """Kaggle is the source and a good snapshot from an earlier night is last_good."""
    settings = settings_env(MLOPS_DATA_SOURCE="kaggle")
    good = publish_last_good(FASHION, write_good(FASHION, tmp_path / "earlier"), snapshots_root(settings))
    return settings, good


def snapshot_folders(settings) -> list[str]:
    return sorted(p.name for p in (snapshots_root(settings) / FASHION.name).iterdir())


def cache_files(settings) -> list[str]:
    cache = settings.cache_dir / "kaggle" / SLUG
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


FAILURES = {  # how Kaggle fails -> what the one-line error says, and whether a retry could help
    "unreachable": (f"could not download {SLUG}: ConnectionError", True),
    "missing_credentials": ("kaggle source: no credentials; set KAGGLE_USERNAME and KAGGLE_KEY", False),
    "bad_credentials": (f"Kaggle rejected the credentials (HTTP 401) of user 'nightly-bot' downloading {SLUG}", False),
    "interrupted": (f"could not download {SLUG}: ", True),
    "corrupt": ("fashionmnist.zip: ", True),
}


def break_kaggle(kaggle: KaggleServer, monkeypatch, failure: str) -> None:
    if failure == "unreachable":
        kaggle.shutdown()
        kaggle.server_close()  # nothing listens there any more: connection refused
    elif failure == "missing_credentials":
        monkeypatch.delenv("KAGGLE_USERNAME")
        monkeypatch.delenv("KAGGLE_KEY")
    else:
        kaggle.mode = failure


@pytest.mark.parametrize("failure", list(FAILURES))
def test_source_failure_fails_the_run_clearly_and_leaves_nothing_half_written(night, kaggle, monkeypatch, failure):
    settings, good = night
    before = pointer(snapshots_root(settings), FASHION)
    break_kaggle(kaggle, monkeypatch, failure)
    with pytest.raises(SourceError) as raised:
        run_stage("ingest", FASHION.model, RunContext(FASHION.dag_id, f"fail-{failure}"))
    expected, retryable = FAILURES[failure]
    message = str(raised.value)
    assert expected in message and "\n" not in message and KEY not in message, message
    assert raised.value.retryable is retryable
    assert snapshot_folders(settings) == sorted([good, "last_good.json"])  # no new snapshot, no staging folder
    assert pointer(snapshots_root(settings), FASHION) == before
    assert not [name for name in cache_files(settings) if name.endswith((".zip", ".kaggle-partial"))]


@pytest.mark.parametrize("failure", list(FAILURES))
def test_use_last_good_continues_on_the_last_validated_snapshot(night, kaggle, settings_env, monkeypatch, failure):
    _, good = night
    settings = settings_env(MLOPS_ON_SOURCE_FAILURE="use_last_good")
    break_kaggle(kaggle, monkeypatch, failure)
    ctx = RunContext(FASHION.dag_id, f"stale-{failure}")
    state = run_stage("ingest", FASHION.model, ctx)
    if failure == "interrupted":  # and the night goes on: validation passes on the stale snapshot
        state = run_stage("validate", FASHION.model, ctx, state)
        assert state["validation"] == "passed"
    assert state["snapshot"] == good
    tags = MlflowClient(settings.tracking_uri).get_run(state["mlflow_run_id"]).data.tags
    assert tags["stale_data"] == "true" and tags["data_hash"] == good
    assert FAILURES[failure][0] in tags["source_error"]
    assert snapshot_folders(settings) == sorted([good, "last_good.json"])


def test_the_next_night_recovers_after_an_interrupted_download(night, kaggle):
    settings, good = night
    kaggle.mode = "interrupted"
    with pytest.raises(SourceError):
        run_stage("ingest", FASHION.model, RunContext(FASHION.dag_id, "cut-off"))
    assert kaggle.requests.count("GET /storage/fashionmnist.zip") > 2  # the download, then the client's resumes
    kaggle.mode = "ok"
    state = run_stage("ingest", FASHION.model, RunContext(FASHION.dag_id, "next-night"))
    assert state["snapshot"] == good  # the same bytes as the earlier night's data: the same content hash
    assert cache_files(settings) == ["fashionmnist.zip"]
    snapshot = snapshots_root(settings) / FASHION.name / state["snapshot"]
    assert sorted(p.name for p in snapshot.iterdir()) == [
        "fashion-mnist_test.csv",
        "fashion-mnist_train.csv",
        "manifest.json",
    ]
    assert (snapshot / "fashion-mnist_train.csv").read_text() == "\n".join(fashion_lines(1000)) + "\n"

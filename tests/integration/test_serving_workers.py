"""The API as `make serve` runs it with `--workers 2`: a real uvicorn subprocess on a real registry.
One `POST /reload` reaches one worker; the reload signal in MLOPS_HOME brings the other along (the
alias poll is off here, so only the signal can). A 100 MB chunked body is cut off after the limit; 100
clients that never send their body are answered 504 at the request deadline, and /health stays up."""

import os
import secrets
import select
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from conftest import free_port, mlflow_client
from serving_support import NAME, register

from mlops_onnx.settings import Settings

TOKEN = secrets.token_urlsafe(16)
DEADLINE = 3.0  # MLOPS_SERVE_REQUEST_TIMEOUT_S of this server

pytestmark = pytest.mark.slow  # a real uvicorn subprocess: make test, not make test-fast


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, MLOPS_HOME, uvicorn's pid) of two workers serving v1."""
    home = tmp_path_factory.mktemp("serving-workers")
    register(home, home / "v1", scale=0.5)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env.update(
        MLOPS_HOME=str(home),
        MLOPS_SERVE_RELOAD_TOKEN=TOKEN,
        MLOPS_SERVE_POLL_SECONDS="0",
        MLOPS_SERVE_REQUEST_TIMEOUT_S=str(DEADLINE),
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
    )
    argv = [sys.executable, "-m", "uvicorn", "mlops_onnx.serving.app:app", "--workers", "2"]
    process = subprocess.Popen([*argv, "--port", str(port), "--log-level", "warning"], env=env, cwd=home)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _worker_pids(base, "1", want=2, seconds=1):
            assert process.poll() is None and time.monotonic() < deadline, "uvicorn --workers 2 did not start"
        yield base, home, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def _worker_pids(base: str, version: str, want: int, seconds: float) -> set[int]:
    """Pids of the workers that answered `GET /model` with `version` (a new connection per request)."""
    pids, deadline = set(), time.monotonic() + seconds
    while len(pids) < want and time.monotonic() < deadline:
        try:
            info = httpx.get(f"{base}/model", timeout=5).json()
        except (httpx.TransportError, ValueError):
            time.sleep(0.2)
            continue
        if info.get("version") == version:
            pids.add(info["pid"])
    return pids


def test_one_reload_moves_every_worker_to_the_new_champion(server):
    base, home, _ = server
    assert len(_worker_pids(base, "1", want=2, seconds=30)) == 2
    register(home, home / "v2", scale=-3.0)
    reloaded = httpx.post(f"{base}/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).json()
    assert reloaded["version"] == "2"  # the worker that got the request
    assert len(_worker_pids(base, "2", want=2, seconds=30)) == 2  # and the other one, through the signal
    assert str(mlflow_client(home).get_model_version_by_alias(NAME, "champion").version) == "2"


def test_a_100_mb_chunked_body_is_refused_without_reading_it(server):
    base, _, pid = server
    limit, total = Settings.serve_max_bytes, 100 * 1024 * 1024
    workers = psutil.Process(pid).children()
    before = sum(w.memory_info().rss for w in workers)
    frame = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"  # 64 KiB chunks
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
        sock.sendall(b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"t":\r\n')
        try:
            while sent < total:
                readable, writable, _ = select.select([sock], [sock], [], 3)
                if readable or not writable:  # an answer, or the server stopped reading
                    break
                sock.sendall(frame)
                sent += 0x10000
            answer = sock.recv(4096)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection after its 413
    assert sent < 32 * 1024 * 1024, f"the server read {sent} bytes of a body over its {limit}-byte limit"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413"), answer[:200]
    growth = (sum(w.memory_info().rss for w in workers) - before) / 2**20
    assert growth < 50, f"the workers' memory grew by {growth:.0f} MB"
    assert httpx.get(f"{base}/health", timeout=5).status_code == 200


def test_slow_clients_are_cut_off_at_the_deadline_and_health_stays_up(server):
    """100 connections declare a body and never send it (a slowloris): each is answered 504 at the request
    deadline instead of holding its worker, and /health answers meanwhile."""
    base, _, _ = server
    port = int(base.rsplit(":", 1)[1])
    started = time.monotonic()
    sockets = []
    for _ in range(100):
        sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE + 20)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
        sock.sendall(b"Content-Length: 50\r\n\r\n{")  # 1 of the 50 bytes announced
        sockets.append(sock)
    health = httpx.get(f"{base}/health", timeout=5)
    assert health.status_code == 200 and time.monotonic() - started < DEADLINE
    answers = []
    for sock in sockets:
        with sock:
            answers.append(sock.recv(4096))
    waited = time.monotonic() - started
    assert all(a.startswith(b"HTTP/1.1 504") for a in answers), {a[:40] for a in answers}
    assert b"MLOPS_SERVE_REQUEST_TIMEOUT_S" in answers[0]
    assert DEADLINE <= waited < DEADLINE + 15, waited  # cut at the deadline, not held

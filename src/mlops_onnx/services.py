"""`make up` / `make down`: Airflow 3 and the MLflow tracking server on the `make demo` state.

Every process is started in its own session with a PID file under `$MLOPS_HOME/run/`; `down`
stops exactly those process groups, and `up` leaves a service alone while its PID is alive.
Both UIs bind to 127.0.0.1 unless MLOPS_BIND_HOST says otherwise. The Airflow admin password is
generated on first start into `$MLOPS_HOME/airflow/passwords.json` (never in the repo) and
printed once. With MLOPS_MLFLOW_AUTH on, MLflow runs its basic-auth app and its accounts'
passwords are generated into `$MLOPS_HOME/mlflow-auth/credentials.json` (see `mlflow_auth`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mlops_onnx import mlflow_auth
from mlops_onnx.airflow_env import airflow, airflow_environment, prepare_airflow
from mlops_onnx.catalog import PIPELINES
from mlops_onnx.settings import Settings, get_settings, private_file

ADMIN = "admin"


@dataclass(frozen=True)
class Ports:
    host: str
    airflow: int
    mlflow: int

    @classmethod
    def of(cls, settings: Settings) -> Ports:
        return cls(host=settings.bind_host, airflow=settings.airflow_port, mlflow=settings.mlflow_port)


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def service_commands(settings: Settings, ports: Ports) -> dict[str, list[str]]:
    return {
        "mlflow": [
            _bin("mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{settings.home / 'mlflow.db'}",
            "--artifacts-destination",
            str(settings.artifacts_dir),
            "--host",
            ports.host,
            "--port",
            str(ports.mlflow),
            "--workers",
            "1",
            *(mlflow_auth.SERVER_ARGUMENTS if settings.mlflow_auth else ()),
        ],
        "airflow-api-server": [_bin("airflow"), "api-server", "--host", ports.host, "--port", str(ports.airflow)],
        "airflow-scheduler": [_bin("airflow"), "scheduler"],
        "airflow-dag-processor": [_bin("airflow"), "dag-processor"],
        "airflow-triggerer": [_bin("airflow"), "triggerer"],
    }


def mlflow_url(ports: Ports) -> str:
    return f"http://127.0.0.1:{ports.mlflow}"


def service_environment(settings: Settings, ports: Ports) -> dict[str, str]:
    env = airflow_environment(settings)
    env.update(
        {
            # Tasks started by the scheduler log to the MLflow server, so the UI shows them at once
            # (with MLOPS_MLFLOW_AUTH on, as the `pipeline` account: `mlflow_auth.log_in`).
            "MLFLOW_TRACKING_URI": mlflow_url(ports),
            "MLOPS_MLFLOW_UI_URL": mlflow_url(ports),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # ~430 MB instead of ~2.4 GB
            "AIRFLOW__API__HOST": ports.host,
            "AIRFLOW__API__PORT": str(ports.airflow),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{ports.airflow}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{ports.airflow}",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file(settings)),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        }
    )
    return env


def password_file(settings: Settings) -> Path:
    return settings.airflow_home / "passwords.json"


def ensure_admin_password(settings: Settings) -> str | None:
    """Generate the admin password on first start; return it only when it was just created."""
    path = password_file(settings)
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({ADMIN: password}, handle)
    return password


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.home / "run" / f"{name}.pid"


def running_pid(settings: Settings, name: str) -> int | None:
    path = _pid_file(settings, name)
    try:
        pid = int(path.read_text().strip())
        alive = os.getsid(pid) == pid  # `up` starts each service as a session leader; a reused PID is not
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        alive = False
    if not alive:
        path.unlink(missing_ok=True)
        return None
    return pid


def running_mlflow_url(settings: Settings) -> str | None:
    """The MLflow server `make up` started on this MLOPS_HOME, if it is running."""
    if running_pid(settings, "mlflow") is None:
        return None
    return mlflow_url(Ports.of(settings))


def wait_for(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # nosec B310: `url` is always http://127.0.0.1:<port>/... built by this module, never user input
            with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310  # nosec B310
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    return False


def up(timeout: float = 180) -> int:
    settings = get_settings()
    ports = Ports.of(settings)
    env = service_environment(settings, ports)
    new_password = ensure_admin_password(settings)
    # Only the MLflow server's own process gets its admin password and secret key.
    mlflow_env = env | (mlflow_auth.prepare_local_server(settings, mlflow_url(ports)) if settings.mlflow_auth else {})
    prepare_airflow(settings, env)
    private_file(settings.home / "mlflow.db")  # the server's backend store: owner only
    for name, command in service_commands(settings, ports).items():
        start(settings, name, command, mlflow_env if name == "mlflow" else env)
    mlflow_ok = wait_for(f"{mlflow_url(ports)}/health", timeout)
    accounts_ok = True
    if settings.mlflow_auth and mlflow_ok:
        try:
            mlflow_auth.ensure_local_accounts(settings)
        except mlflow_auth.MlflowAuthError as exc:
            print(f"MLflow accounts: {exc}", file=sys.stderr)
            accounts_ok = False
    airflow_ok = wait_for(f"http://127.0.0.1:{ports.airflow}/api/v2/monitor/health", timeout)
    unpause(env, timeout)
    print(f"\nMLflow UI : {mlflow_url(ports)}  ({'up' if mlflow_ok else 'NOT RESPONDING'})")
    if settings.mlflow_auth:
        print(
            f"MLflow login: users {', '.join(mlflow_auth.ACCOUNTS)} ({mlflow_auth.VIEWER}: read-only, for people), "
            f"passwords in {mlflow_auth.credentials_file(settings)}"
        )
    print(f"Airflow UI: http://127.0.0.1:{ports.airflow}  ({'up' if airflow_ok else 'NOT RESPONDING'})")
    print(f"Airflow login: user '{ADMIN}', password in {password_file(settings)}")
    if new_password:
        print(f"  (generated now: {new_password})")
    return 0 if mlflow_ok and accounts_ok and airflow_ok else 1


def start(settings: Settings, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen | None:
    """Start one service in its own session with a PID file, unless it is already running."""
    pid = running_pid(settings, name)
    if pid is not None:
        print(f"{name}: already running (pid {pid})")
        return None
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _pid_file(settings, name).parent.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("ab") as log_file:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pid_file(settings, name).write_text(str(process.pid))
    print(f"{name}: started (pid {process.pid}, log {logs / f'{name}.log'})")
    return process


def unpause(env: dict[str, str], timeout: float) -> None:
    """Unpause the nightly DAGs once the DAG processor has parsed them, so the schedule really runs
    (MLOPS_UNPAUSE: `all`, the default, a comma-separated list of DAG ids, or `none`)."""
    deadline = time.monotonic() + timeout
    wanted = get_settings().unpause
    pending = (
        [p.dag_id for p in PIPELINES.values()]
        if wanted == "all"
        else [d.strip() for d in wanted.split(",") if d.strip() and d.strip() != "none"]
    )
    while pending and time.monotonic() < deadline:
        pending = [d for d in pending if airflow(["dags", "unpause", d], env, quiet=True).returncode != 0]
        if pending:
            time.sleep(3)
    if pending:
        print(f"could not unpause {', '.join(pending)} yet; unpause them in the UI", file=sys.stderr)


def down(timeout: float = 30) -> int:
    """Stop what `up` started: each service's whole session (the scheduler's task workers too)."""
    settings = get_settings()
    for name in reversed(list(service_commands(settings, Ports.of(settings)))):
        pid = running_pid(settings, name)
        if pid is None:
            continue
        _signal_session(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _session_members(pid):
            time.sleep(0.5)
        _signal_session(pid, signal.SIGKILL)
        _pid_file(settings, name).unlink(missing_ok=True)
        print(f"{name}: stopped (pid {pid})")
    return 0


def _session_members(sid: int) -> list[int]:
    """Processes in the session `up` started (its workers may sit in process groups of their own)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry.name)) == sid:
                    members.append(int(entry.name))
    return members


def _signal_session(sid: int, signum: int) -> None:
    for pid in _session_members(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def status() -> int:
    settings = get_settings()
    for name in service_commands(settings, Ports.of(settings)):
        pid = running_pid(settings, name)
        print(f"{name:<22} {f'running (pid {pid})' if pid else 'stopped'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlops-onnx-services")
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    return {"up": up, "down": down, "status": status}[args.command]()


if __name__ == "__main__":
    sys.exit(main())

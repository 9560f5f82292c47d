"""No default or hard-coded secrets in the repository; services bind to loopback by default."""

import re
import subprocess

from conftest import REPO_ROOT

SECRET_ASSIGNMENT = re.compile(
    r"""(?ix)(password|passwd|secret|api_?key|token(?!izer)|fernet_key)\w*["']?\s*[:=]\s*["']([^"'\s${}<>]{4,})["']"""
)
URL_CREDENTIALS = re.compile(r"[a-z+]+://[^/\s:@'\"]+:([^@\s'\"${}]+)@", re.IGNORECASE)
PLACEHOLDERS = {"change-me", "changeme", "not-a-real-key"}


def tracked_files():
    names = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    for name in names.splitlines():
        path = REPO_ROOT / name
        if path.suffix in {".png", ".onnx", ".lock"} or not path.is_file():
            continue
        yield name, path.read_text(encoding="utf-8", errors="replace")


def test_no_hard_coded_secrets():
    found = []
    for name, text in tracked_files():
        for number, line in enumerate(text.splitlines(), 1):
            for match in SECRET_ASSIGNMENT.finditer(line):
                value = match.group(2)
                if value.lower() not in PLACEHOLDERS and not value.startswith(("os.environ", "settings.")):
                    found.append(f"{name}:{number}: {line.strip()[:120]}")
            for match in URL_CREDENTIALS.finditer(line):
                if match.group(1).lower() not in PLACEHOLDERS | {"password"}:  # docs: "user:password@host"
                    found.append(f"{name}:{number}: {line.strip()[:120]}")
    assert found == []


def test_env_example_has_only_placeholders():
    for line in (REPO_ROOT / ".env.example").read_text().splitlines():
        key, _, value = line.partition("=")
        if re.search(r"PASSWORD|SECRET|FERNET|_KEY$", key) and value:
            assert value.startswith("change-me"), line


def test_services_bind_to_loopback_by_default(settings_env, monkeypatch):
    from mlops_onnx.services import Ports

    monkeypatch.delenv("MLOPS_BIND_HOST", raising=False)
    assert Ports.of(settings_env()).host == "127.0.0.1"
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "MLOPS_BIND_HOST:-127.0.0.1" in makefile


def test_state_databases_are_readable_by_their_owner_alone(settings_env, monkeypatch):
    """mlflow.db, mlflow_auth.db and airflow.db hold run data, password hashes, connections and variables:
    created 0600 (and tightened when an older state left them 0644), MLOPS_HOME itself 0700 when created."""
    import stat

    import mlflow

    from mlops_onnx import airflow_env, mlflow_auth, tracking

    for variable in ("AIRFLOW_HOME", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(variable, raising=False)
    settings = settings_env()
    mode = lambda path: stat.S_IMODE(path.stat().st_mode)  # noqa: E731
    tracking.configure(settings)
    mlflow.MlflowClient().search_experiments()  # MLflow creates its tables in the file
    assert mode(settings.home) == 0o700 and mode(settings.home / "mlflow.db") == 0o600
    assert mlflow.MlflowClient().get_experiment_by_name("Default") is not None  # still a working store
    mlflow_auth.prepare_local_server(settings, "http://127.0.0.1:5000")
    assert mode(settings.home / "mlflow_auth.db") == 0o600
    monkeypatch.setattr(airflow_env, "create_pools", lambda env: None)  # the pools are not under test here
    (settings.airflow_home).mkdir(parents=True)
    (settings.airflow_home / "airflow.db").touch(mode=0o644)  # an older state's
    airflow_env.prepare_airflow(settings)
    assert mode(settings.airflow_home / "airflow.db") == 0o600
    assert (settings.airflow_home / "airflow.db").stat().st_size > 0  # migrated into it

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

"""Airflow's embedded state under MLOPS_HOME: its environment, its CLI, its metadata DB and pools.

Shared by `cli` (`make demo`) and `services` (`make up`); it imports neither.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlops_onnx.catalog import airflow_pools
from mlops_onnx.settings import Settings, private_file, sqlite_file

REPO_ROOT = Path(__file__).resolve().parents[2]


def airflow_environment(settings: Settings) -> dict[str, str]:
    """Environment for Airflow commands on the embedded state (no services to install)."""
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(settings.airflow_home))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO_ROOT / "dags"))
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO_ROOT / "plugins"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.setdefault("AIRFLOW__CORE__PARALLELISM", "4")
    env.setdefault("AIRFLOW__API__HOST", "127.0.0.1")
    for key, value in home_paths(Path(env["AIRFLOW_HOME"])).items():
        env.setdefault(key, value)
    env["MLOPS_HOME"] = str(settings.home)
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    return env


def home_paths(airflow_home: Path) -> dict[str, str]:
    """What airflow.cfg would pin to the absolute folder it was first written in (its metadata DB and logs),
    derived from AIRFLOW_HOME at every start instead, so a copied or moved home uses its own files."""
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
        "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(airflow_home / "logs" / "dag_processor"),
    }


def airflow(args: list[str], env: dict[str, str], quiet: bool = False) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    return subprocess.run(command, env=env, check=False, text=True, capture_output=quiet)


def prepare_airflow(settings: Settings, env: dict[str, str] | None = None) -> dict[str, str]:
    """Migrate Airflow's metadata DB and create the pools (both idempotent)."""
    env = env or airflow_environment(settings)
    Path(env["AIRFLOW_HOME"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    database = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or f"sqlite:///{Path(env['AIRFLOW_HOME']) / 'airflow.db'}"
    if sqlite_file(database) is not None:
        private_file(sqlite_file(database))  # the metadata DB holds connections and variables: owner only
    _airflow_checked(["db", "migrate"], env)
    create_pools(env)
    return env


def create_pools(env: dict[str, str]) -> None:
    """The `gpu` pool and one single-slot registry pool per model (`catalog.airflow_pools`)."""
    for name, slots, description in airflow_pools():
        _airflow_checked(["pools", "set", name, str(slots), description], env)


def _airflow_checked(step: list[str], env: dict[str, str]) -> None:
    done = airflow(step, env, quiet=True)
    if done.returncode != 0:
        raise SystemExit(f"airflow {' '.join(step)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

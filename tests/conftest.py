"""Shared fixtures: a private MLOPS_HOME per test, the real data sample when it exists, and a
helper that runs a nightly DAG through Airflow (`airflow dags test`) on that state."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# A worktree outside the project folder can point at the sample with SHARED_DATA_DIR.
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR") or REPO_ROOT.parent / "shared" / "data").resolve()
HAS_SHARED_DATA = (SHARED_DATA / "fashionmnist" / "fashion-mnist_train.csv").is_file()

# Airflow reads its home at import time: give the test process a private one before anything imports it.
_SCRATCH = tempfile.mkdtemp(prefix="mlops-tests-")
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = os.path.join(_SCRATCH, "airflow-home")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO_ROOT / "dags"))
for leaked in [name for name in os.environ if name.startswith(("MLOPS_", "KAGGLE_"))] + ["MLFLOW_TRACKING_URI"]:
    os.environ.pop(leaked, None)
os.environ["KAGGLE_CONFIG_DIR"] = os.path.join(_SCRATCH, "no-kaggle")  # never the developer's kaggle.json


@pytest.fixture
def settings_env(monkeypatch, tmp_path):
    """Point every MLOPS_* setting at a private state folder; returns a function to set more."""
    from mlops_onnx.settings import get_settings

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "mlops"))
    monkeypatch.setenv("MLOPS_PROFILE", "quick")
    # mlflow.set_tracking_uri() also exports MLFLOW_TRACKING_URI: never inherit another test's store.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # MLflow's Default experiment writes ./mlruns: never into the checkout
    get_settings.cache_clear()

    def apply(**values: str):
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        return get_settings()

    yield apply
    get_settings.cache_clear()


def run_stage(name: str, model: str, ctx, *upstream: dict) -> dict:
    """Call a pipeline stage directly, as the DAG's task does: `mlops_onnx.stages.<name>` with the spec of the
    state's candidate architecture (the default candidate's before `candidates`). The gate is handed one
    candidate's state as the DAG hands it the night's state and every candidate's."""
    import importlib

    from mlops_onnx.models import load_spec

    stage = getattr(importlib.import_module(f"mlops_onnx.stages.{name}"), name)
    state = {k: v for part in upstream for k, v in part.items()}
    if name == "gate_and_register" and "candidate_results" not in state:
        spec = load_spec(model, state.get("architecture"))
        night = {**state, "mlflow_run_id": state.get("night_run_id", state["mlflow_run_id"])}
        return stage(
            load_spec(model), ctx, {**night, "candidate_results": [{**state, "architecture": spec.architecture}]}
        )
    return stage(load_spec(model, state.get("architecture")), ctx, *([state] if upstream else []))


def settings_with(home: Path, **values: str):
    """The Settings a task would read with MLOPS_HOME=home, the quick profile and `values` (MLOPS_<name>), without
    leaving them in this process's environment: for module-scoped fixtures, which cannot use `settings_env`."""
    from mlops_onnx.settings import get_settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_HOME", str(home))
        patch.setenv("MLOPS_PROFILE", "quick")
        for name, value in values.items():
            patch.setenv(f"MLOPS_{name}", value)
        get_settings.cache_clear()
        settings = get_settings()
    get_settings.cache_clear()
    return settings


def train_and_export(spec, snapshot, workdir: Path, settings):
    """A spec's real training on `snapshot` and its real ONNX export: (result, onnx path, per-epoch metrics)."""
    epochs = []
    result = spec.train(snapshot, workdir, settings, lambda epoch, metrics: epochs.append((epoch, metrics)))
    onnx_path = workdir / "model_fp32.onnx"
    spec.export_onnx(result.checkpoint, onnx_path)
    return result, onnx_path, epochs


def stock_sample_snapshot(folder: Path, settings):
    """The stock archive the tests train on, as a snapshot: the real sample, or a synthetic one in `folder`."""
    import numpy as np

    from mlops_onnx.snapshots import Snapshot

    if HAS_SHARED_DATA:
        data = SHARED_DATA / "price-volume-data-for-all-us-stocks-etfs"
    else:
        from mlops_onnx.sources.synthetic_stocks import generate_stocks

        data = folder / "data"
        generate_stocks(data, np.random.default_rng(settings.seed), settings)
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.us.txt"))
    return Snapshot("stocks", "0" * 64, data, {"files": [{"path": f} for f in files]})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pipeline_env(home: Path, data_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for a DAG run in `home`, small settings, real sample data when it exists."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "AIRFLOW_", "AIRFLOW__"))}
    env.update(
        {
            "MLOPS_HOME": str(home),
            "MLOPS_PROFILE": "quick",
            # Small training runs: low bars for the classifiers. The stock gate stays MASE ≤ 1 (not configurable up).
            "MLOPS_GATE_FASHION_MNIST_CLASSIFIER": "0.5",
            "MLOPS_GATE_FAKE_NEWS_CLASSIFIER": "0.5",
            "MLOPS_BENCH_RUNS": "10",
            "MLOPS_BENCH_WARMUP": "2",
            # One candidate per task unless a test says otherwise: the tests of candidates set their own.
            "MLOPS_CANDIDATES_FASHION": "cnn",
            "MLOPS_CANDIDATES_FAKE_NEWS": "lstm",
            "MLOPS_CANDIDATES_STOCKS": "lstm",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    data_dir = data_dir or (SHARED_DATA if HAS_SHARED_DATA else None)
    if data_dir is not None:
        env.update({"MLOPS_DATA_SOURCE": "local", "MLOPS_DATA_DIR": str(data_dir)})
    else:
        env["MLOPS_DATA_SOURCE"] = "synthetic"
    env.update(extra)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    from mlops_onnx.airflow_env import home_paths

    env.update(home_paths(home / "airflow"))  # as the project runs Airflow: the DB and logs follow the home
    env.update(
        {
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
    )
    return env


def run_dag(
    dag_id: str, env: dict[str, str], timeout: int = 900, conf: dict | None = None, logical_date: str | None = None
) -> subprocess.CompletedProcess:
    """`airflow dags test <dag_id> [<logical date>] [-c <conf>]` on the state in env["MLOPS_HOME"] (migrating it
    first); `conf` sets DAG params, e.g. {"force_retrain": True}."""
    import json

    airflow = str(Path(sys.executable).with_name("airflow"))
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    extra = ([logical_date] if logical_date else []) + (["-c", json.dumps(conf)] if conf else [])
    done = subprocess.run(
        [airflow, "dags", "test", dag_id, *extra], env=env, capture_output=True, text=True, timeout=timeout
    )
    sys.stdout.write(done.stdout[-20000:])
    sys.stderr.write(done.stderr[-5000:])
    return done


def write_fashion_sample(folder: Path, train_rows: int = 1000, test_rows: int = 400) -> Path:
    """`folder/fashionmnist/` in Kaggle's layout: the first rows of the shared sample (else of synthetic data)."""
    data = folder / "fashionmnist"
    data.mkdir(parents=True)
    if HAS_SHARED_DATA:
        source = SHARED_DATA / "fashionmnist"
    else:
        import numpy as np

        from mlops_onnx.sources.synthetic import write_fashion

        source = folder / "synthetic"
        write_fashion(source, np.random.default_rng(0), (train_rows, test_rows))
    for name, rows in (("fashion-mnist_train.csv", train_rows), ("fashion-mnist_test.csv", test_rows)):
        lines = (source / name).read_text().splitlines()[: rows + 1]
        (data / name).write_text("\n".join(lines) + "\n")
    return data


def latest_run(client, model: str, index: int = 0, architecture: str | None = None):
    """The newest night's MLflow run of a model's experiment (`index` 1: the one before it); with
    `architecture`, that candidate's run of it."""
    experiment = client.get_experiment_by_name(model)
    query = "tags.run_kind = 'night'" if architecture is None else f"tags.architecture = '{architecture}'"
    runs = client.search_runs([experiment.experiment_id], query, order_by=["attributes.start_time DESC"])
    return runs[index]


def mlflow_client(home: Path):
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


@pytest.fixture(scope="session")
def exported_cnn(tmp_path_factory):
    """An untrained, seeded FashionCNN checkpoint and its real `torch.onnx` export."""
    import torch

    from mlops_onnx.models.fashion import SPEC
    from mlops_onnx.models.fashion_net import FashionCNN

    folder = tmp_path_factory.mktemp("cnn")
    torch.manual_seed(0)
    checkpoint = folder / "model.pt"
    torch.save(FashionCNN().state_dict(), checkpoint)
    onnx_path = folder / "model_fp32.onnx"
    SPEC.export_onnx(checkpoint, onnx_path)
    return checkpoint, onnx_path


def perturbed_copy(onnx_path: Path, out: Path, scale: float = 1.5) -> Path:
    """The same graph with one weight tensor changed: a broken export."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    for init in model.graph.initializer:
        weights = numpy_helper.to_array(init)
        if weights.ndim == 4:  # the first conv kernel
            init.CopyFrom(numpy_helper.from_array((weights * scale).astype(np.float32), init.name))
            break
    onnx.save(model, str(out))
    return out


@pytest.fixture(scope="module")
def home(request, tmp_path_factory):
    """A private MLOPS_HOME shared by the tests of one DAG end-to-end module (which names `DAG_ID`)."""
    return tmp_path_factory.mktemp(request.module.DAG_ID)


@pytest.fixture(scope="module")
def first_run(request, home):
    """The module's DAG run once, through Airflow, on small settings; the tests read what it left."""
    done = run_dag(request.module.DAG_ID, pipeline_env(home))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


NEWS_DATA, LIAR_DATA = SHARED_DATA / "fake-and-real-news-dataset", SHARED_DATA / "liar_dataset"
HAS_NEWS = (NEWS_DATA / "Fake.csv").is_file() and (LIAR_DATA / "train.tsv").is_file()


@pytest.fixture(scope="session")
def news_folder(tmp_path_factory):
    """A fake-news snapshot folder for the text candidates: the real sample (or synthetic files) and LIAR
    under aux/liar."""
    import numpy as np

    folder = tmp_path_factory.mktemp("news-data")
    (folder / "aux" / "liar").mkdir(parents=True)
    if HAS_NEWS:
        for name in ("Fake.csv", "True.csv"):
            shutil.copy(NEWS_DATA / name, folder / name)
        for name in ("train.tsv", "valid.tsv"):
            shutil.copy(LIAR_DATA / name, folder / "aux" / "liar" / name)
    else:
        from types import SimpleNamespace

        from mlops_onnx.sources.synthetic_news import generate_liar, generate_news

        quick = SimpleNamespace(synthetic_size="small")
        generate_news(folder, np.random.default_rng(0), quick)
        generate_liar(folder / "aux" / "liar", np.random.default_rng(1), quick)
    return folder

"""Two runs of the same DAG at once (a manual trigger during the nightly run): each keeps its own files,
both register, and `champion` ends on the better version whichever finishes last (compare-and-set)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import mlflow_client
from fault_support import BIN, FASHION, FASHION_DAG, HERE, small_env

from mlops_onnx import registry, tracking
from mlops_onnx.models.fashion import SPEC
from mlops_onnx.tracking import RunContext

pytestmark = pytest.mark.e2e


def test_two_dag_runs_at_once_keep_their_files_apart_and_the_better_one_is_champion(tmp_path):
    import onnx

    home = tmp_path / "home"
    runs = {  # logical date -> settings: a good nightly run and a poor manual one started beside it
        "2026-11-03T02:00:00+00:00": small_env(home, MLOPS_MAX_TRAIN_ROWS="2000", MLOPS_EPOCHS="2"),
        "2026-11-03T02:05:00+00:00": small_env(home, MLOPS_MAX_TRAIN_ROWS="300", MLOPS_GATE_FASHION_MNIST_CNN="0.05"),
    }
    env = next(iter(runs.values()))
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True)
    for command in (["db", "migrate"], ["dags", "reserialize"]):  # as the DAG processor would have, once
        subprocess.run([str(BIN / "airflow"), *command], env=env, check=True, capture_output=True, timeout=300)
    procs, logs = [], [tmp_path / f"run{i}.log" for i in range(len(runs))]
    for (date, run_env), log in zip(runs.items(), logs):  # the manual run starts once the nightly one ingests
        while procs and not (home / "work" / FASHION_DAG).is_dir():
            assert procs[0].poll() is None, logs[0].read_text()[-3000:]
            time.sleep(0.2)
        with log.open("w") as out:
            procs.append(subprocess.Popen([str(BIN / "airflow"), "dags", "test", FASHION_DAG, date], env=run_env,
                                          stdout=out, stderr=subprocess.STDOUT))  # fmt: skip
    for proc, log in zip(procs, logs):
        proc.wait(timeout=900)
        sys.stdout.write(log.read_text()[-6000:])
        assert proc.returncode == 0, log.read_text()[-3000:]

    client = mlflow_client(home)
    experiment = client.get_experiment_by_name(FASHION)
    mlflow_runs = client.search_runs([experiment.experiment_id])
    assert len(mlflow_runs) == 2
    workdirs = set()
    for run in mlflow_runs:
        airflow_run_id = run.data.tags["airflow_run_id"]
        workdir = home / "work" / FASHION_DAG / RunContext(FASHION_DAG, airflow_run_id).safe_run_id
        workdirs.add(workdir)
        props = {p.key: p.value for p in onnx.load(str(workdir / "model_fp32.onnx")).metadata_props}
        assert props["airflow_run_id"] == airflow_run_id  # its own export, not overwritten by the other run
        assert json.loads((workdir / "reports" / "parity.json").read_text())["variants"]["fp32"]["passed"]
    assert len(workdirs) == 2

    versions = {v.run_id: v for v in client.search_model_versions(f"name='{FASHION}'")}
    assert set(versions) == {r.info.run_id for r in mlflow_runs}
    best = max(mlflow_runs, key=lambda r: r.data.metrics["test_accuracy"])
    champion = client.get_model_version_by_alias(FASHION, "champion")
    assert champion.run_id == best.info.run_id


def _driver(env, run_id, accuracy, onnx_path, *extra):
    return subprocess.Popen([sys.executable, str(HERE / "register_driver.py"), run_id, str(accuracy),
                             str(onnx_path), *extra], env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip


@pytest.mark.parametrize("slow", ["worse", "better"])
def test_concurrent_registrations_leave_champion_on_the_better_version(settings_env, exported_cnn, slow):
    """The slow one reads the old champion (0.80) and holds 3 s; the fast one starts 0.5 s later. Without the
    registry lock both would read 0.80 and the slow one would write last and win, even when it is the worse
    one; with it the fast one waits, reads the slow one's result and finishes last, and only the better
    version is champion in both orders."""
    settings = settings_env(MLOPS_DATA_SOURCE="synthetic", MLOPS_GATE_FASHION_MNIST_CNN="0.5")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    onnx_path = exported_cnn[1]
    ctx = RunContext(FASHION_DAG, "night_0")
    workdir = settings.work_dir / "night_0"
    (workdir / "reports").mkdir(parents=True)
    night_0 = {"validation": "passed", "parity": {"fp32": True}, "metrics": {"test_accuracy": 0.80},
               "onnx_fp32": str(onnx_path), "snapshot": "ab" * 32, "data_source": "synthetic",
               "workdir": str(workdir)}  # fmt: skip
    night_0["mlflow_run_id"] = tracking.find_or_create_run(FASHION, ctx, settings)
    assert registry.gate_and_register(SPEC, ctx, night_0, settings)["aliases"] == ["champion"]

    go = settings.home / "go"
    scores = {"better": 0.95, "worse": 0.85}
    timing = {name: ["--hold", "3"] if name == slow else ["--after", "0.5"] for name in scores}
    drivers = {name: _driver(env, name, score, onnx_path, "--go", str(go), *timing[name])
               for name, score in scores.items()}  # fmt: skip
    deadline = time.monotonic() + 300
    while not all((go.parent / f"{name}.ready").exists() for name in scores):
        assert time.monotonic() < deadline and all(d.poll() is None for d in drivers.values())
        time.sleep(0.05)
    go.touch()
    results = {name: json.loads(d.communicate(timeout=300)[0].splitlines()[-1]) for name, d in drivers.items()}
    assert all(d.returncode == 0 for d in drivers.values())

    client = mlflow_client(settings.home)
    assert len(client.search_model_versions(f"name='{FASHION}'")) == 3
    assert str(client.get_model_version_by_alias(FASHION, "champion").version) == results["better"]["version"]
    fast = "better" if slow == "worse" else "worse"
    assert results[slow]["finished"] < results[fast]["finished"]  # the lock made the fast one wait its turn

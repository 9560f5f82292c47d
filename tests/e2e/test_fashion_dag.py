"""The nightly Fashion-MNIST DAG end to end through Airflow (`airflow dags test`), real MLflow."""

import json
import shutil

import conftest
import pytest
from conftest import HAS_SHARED_DATA, SHARED_DATA, mlflow_client, pipeline_env, run_dag

pytestmark = pytest.mark.e2e
DAG_ID, MODEL = "fashion_mnist_nightly", "fashion_mnist_classifier"
VARIANTS = ("fp32", "int8_static", "int8_dynamic", "fp16")


def latest_run(client, index: int = 0):
    """The newest night's CNN candidate run (what trained, exported, benchmarked and registered)."""
    return conftest.latest_run(client, MODEL, index, architecture="cnn")


def test_registers_a_traceable_champion(home, first_run):
    client = mlflow_client(home)
    version = client.get_model_version_by_alias(MODEL, "champion")
    run = latest_run(client)
    assert str(version.version) == "1" and version.run_id == run.info.run_id
    tags = version.tags
    assert tags["airflow_dag_id"] == DAG_ID and tags["airflow_run_id"].startswith("manual__")
    assert len(tags["data_hash"]) == 64 and tags["data_hash"] == run.data.tags["data_hash"]
    assert tags["data_source"] == ("local" if HAS_SHARED_DATA else "synthetic")
    assert tags["git_commit"] and tags["parity_status"] == "passed"
    assert tags["serving_variant"] in VARIANTS
    snapshot = home / "snapshots" / "fashionmnist"
    assert json.loads((snapshot / "last_good.json").read_text())["content_hash"] == tags["data_hash"]


def test_run_carries_every_headline_metric(home, first_run):
    run = latest_run(mlflow_client(home))
    metrics, tags = run.data.metrics, run.data.tags
    assert metrics["test_accuracy"] >= 0.5 and "test_macro_f1" in metrics
    assert metrics["parity_fp32_max_abs_diff"] <= 1e-4 and metrics["parity_fp32_agreement"] == 1.0
    for variant in VARIANTS[1:]:
        assert f"parity_{variant}_agreement" in metrics, variant
    native = tags["bench_cpu_native_path"]  # eager or torch.compile, whichever the probe found faster
    for batch in (1, 64):
        assert metrics[f"bench_cpu_{native}_b{batch}_p50_ms"] > 0
        assert metrics[f"bench_cpu_onnx_fp32_b{batch}_p99_ms"] > 0
    natives = [k for k in metrics if k.startswith("bench_cpu_native_") and k.endswith("_b1_p50_ms")]
    assert natives == [f"bench_cpu_{native}_b1_p50_ms"]  # only the fastest native path is timed in full
    assert metrics["size_onnx_fp32_bytes"] > metrics["size_onnx_int8_static_bytes"] > 0
    assert tags["validation_status"] == "passed" and tags["gate_status"] == "registered"
    # Without a GPU (CI) the task is skipped and says why; on a GPU machine it ran.
    assert tags["bench_gpu_status"].startswith("GPU not used") or tags["bench_gpu_status"] == "ok"
    assert tags["data_source_reason"]


def test_per_epoch_curves_and_artifacts_are_logged(home, first_run):
    client = mlflow_client(home)
    run = latest_run(client)
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert len(history) >= 2 and [m.step for m in history] == list(range(1, len(history) + 1))
    paths = {
        a.path
        for folder in ("reports", "plots", "model", "variants")
        for a in client.list_artifacts(run.info.run_id, folder)
    }
    for expected in (
        "reports/validation.json",
        "reports/parity.json",
        "reports/benchmark_cpu.json",
        "plots/confusion_matrix.png",
        "model/MLmodel",
        "model/model.onnx",
    ):
        assert expected in paths, sorted(paths)


def test_registered_model_loads_and_predicts(home, first_run):
    import mlflow
    import numpy as np

    mlflow_client(home)
    model = mlflow.onnx.load_model(f"models:/{MODEL}@champion")
    from mlops_onnx.runtime import make_session

    path = home / "loaded.onnx"
    import onnx

    onnx.save(model, str(path))
    out = make_session(path).run(None, {"image": np.zeros((3, 1, 28, 28), np.float32)})[0]
    assert out.shape == (3, 10)


def _label_12(lines):
    return lines[:5] + ["12" + lines[5][lines[5].index(",") :]] + lines[6:]


# problem -> (rewrite of the train file's lines, text the failure must show). One through a DAG run here;
# every other kind of bad file is checked at the stages (tests/faults/test_bad_input.py, tests/data).
BAD_TRAIN_FILES = {"label_12": (_label_12, "12")}


@pytest.mark.parametrize("problem", list(BAD_TRAIN_FILES))
def test_bad_data_stops_at_validate_and_registers_nothing(tmp_path, problem):
    data = tmp_path / "data" / "fashionmnist"
    data.mkdir(parents=True)
    if HAS_SHARED_DATA:
        for name in ("fashion-mnist_train.csv", "fashion-mnist_test.csv"):
            lines = (SHARED_DATA / "fashionmnist" / name).read_text().splitlines()[:1501]
            (data / name).write_text("\n".join(lines) + "\n")
    else:
        import numpy as np

        from mlops_onnx.sources.synthetic import write_fashion

        write_fashion(data, np.random.default_rng(0), (1500, 1500))
    train = data / "fashion-mnist_train.csv"
    rewrite, expected = BAD_TRAIN_FILES[problem]
    lines = rewrite(train.read_text().splitlines())
    train.write_text("\n".join(lines) + "\n" if lines else "")

    home = tmp_path / "home"
    done = run_dag(DAG_ID, pipeline_env(home, data_dir=tmp_path / "data"))
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "validate failed" in output and "fashion-mnist_train.csv" in output
    assert expected in output
    assert "▶ train started" not in output
    client = mlflow_client(home)
    assert client.search_registered_models() == []
    run = conftest.latest_run(client, MODEL)  # the night's run: no candidate ever started
    assert run.data.tags["validation_status"] == "failed" and run.data.tags["gate_status"] == "rejected"
    assert not (home / "snapshots" / "fashionmnist" / "last_good.json").exists()
    shutil.rmtree(home, ignore_errors=True)


def test_plugin_links_open_the_mlflow_run_and_model(home, first_run):
    """The plugin's extra links, resolved as the Airflow API server does, from this run's metadata DB."""
    import subprocess
    import sys

    from conftest import REPO_ROOT

    run = latest_run(mlflow_client(home))
    code = (
        "import sys; sys.path.insert(0, 'plugins')\n"
        "from airflow.models.taskinstancekey import TaskInstanceKey\n"
        "import mlflow_links\n"
        f"key = TaskInstanceKey('{DAG_ID}', 'gate_and_register', '{run.data.tags['airflow_run_id']}', 1, -1)\n"
        "print(mlflow_links.MlflowRunLink().get_link(None, ti_key=key))\n"
        "print(mlflow_links.MlflowModelLink().get_link(None, ti_key=key))\n"
        "other = TaskInstanceKey('some_other_dag', 'gate_and_register', 'x', 1, -1)\n"
        "print(repr(mlflow_links.MlflowRunLink().get_link(None, ti_key=other)))\n"
    )
    out = (
        subprocess.run(
            [sys.executable, "-c", code],
            env=pipeline_env(home),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()
    )
    assert out[-3] == f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert out[-2] == f"http://127.0.0.1:5000/#/models/{MODEL}/versions/{run.data.tags['registered_version']}"
    assert out[-1] == "''"


def test_bench_reports_every_cell_or_why_it_is_empty(home, first_run, tmp_path):
    """`make bench` on what the runs left: rows with the report's fields, parity, ORT's profile, the
    GPU cells empty with their reason on a machine without CUDA, the charts and an MLflow run."""
    import subprocess
    import sys

    out = tmp_path / "reports"
    env = pipeline_env(home)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlops_onnx.benchmarks",
            "all",
            "--models",
            MODEL,
            "--providers",
            "cpu,cuda",
            "--variants",
            "native_eager,onnx_fp32,onnx_fp16",
            "--out-dir",
            str(out),
            "--no-readme",
        ],
        env=env | {"MLOPS_BENCH_BATCHES": "1,8", "MLOPS_BENCH_RUNS": "5", "MLOPS_BENCH_WARMUP": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "benchmark.json").read_text())
    cpu = {(r["variant"], r["batch"]): r for r in report["rows"] if r["provider"] == "cpu"}
    # fp16 passes parity on every run here; int8 static may not on a quick run (then the version has no such file)
    assert set(cpu) == {(v, b) for v in ("native_eager", "onnx_fp32", "onnx_fp16") for b in (1, 8)}
    for row in cpu.values():
        assert row["model"] == MODEL and row["runs"] == 5 and row["threads"] == 1
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] and row["throughput_per_s"] > 0
        assert row["size_bytes"] > 0 and row["peak_rss_mb"] > row["rss_before_load_mb"] > 0
    assert cpu[("onnx_fp32", 1)]["parity_ok"] and cpu[("onnx_fp32", 1)]["parity_max_abs_diff"] <= 1e-4
    assert cpu[("onnx_fp32", 1)]["execution_provider"] == "CPUExecutionProvider"
    assert cpu[("onnx_fp32", 1)]["optimized_file"] is True  # the graph the pipeline optimised once, at export
    champion = mlflow_client(home).get_model_version_by_alias(MODEL, "champion")
    assert report["models"][f"{MODEL}/cnn"]["registered_version"] == str(champion.version)
    assert report["profiles"][f"{MODEL}/cnn:cpu"]["top_ops"], report["profiles"]
    assert {t["model"] for t in report["targets"]} == {MODEL}  # the models asked for
    import torch

    if not torch.cuda.is_available():  # CI: every GPU cell is empty and says why, none holds a number
        assert not [r for r in report["rows"] if r["provider"] == "cuda"]
        reasons = {n["variant"]: n["reason"] for n in report["notes"] if n["provider"] == "cuda"}
        assert "fell back" in reasons["onnx_fp32"] and "CUDA" in reasons["native_eager"]
    assert "## Targets" in (out / "benchmark.md").read_text()
    assert (out / "benchmark_latency_b1.png").stat().st_size > 0 and (out / "benchmark_throughput.png").is_file()
    client = mlflow_client(home)
    [bench_run] = client.search_runs([client.get_experiment_by_name("benchmarks").experiment_id])
    assert {a.path for a in client.list_artifacts(bench_run.info.run_id)} >= {"benchmark.json", "benchmark.md"}
    assert bench_run.data.metrics[f"{MODEL}.cnn.onnx_fp32.cpu.b1.p50_ms"] == cpu[("onnx_fp32", 1)]["p50_ms"]

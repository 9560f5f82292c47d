"""The benchmark harness on a real DAG run's files: the nightly `benchmark_cpu` stage (ONNX and the fastest
native path), and `make bench` on what the registry holds — a version registered in a real MLflow SQLite
registry, its files from the registry and the shared storage, on a machine whose working folder is empty."""

import json
import shutil

import numpy as np
import pytest
from conftest import mlflow_client

from mlops_onnx import registry, tracking
from mlops_onnx.benchmarks import cli
from mlops_onnx.datasets import FASHION_MNIST
from mlops_onnx.models.fashion import SPEC
from mlops_onnx.runtime import optimize_offline
from mlops_onnx.snapshots import SnapshotStore
from mlops_onnx.sources.synthetic import write_fashion
from mlops_onnx.stages import run_files
from mlops_onnx.stages.benchmark_cpu import benchmark_cpu
from mlops_onnx.tracking import RunContext


@pytest.fixture
def cnn_run(settings_env, exported_cnn):
    """A DAG run of the CNN up to parity: a snapshot, the checkpoint and ONNX fp32 pushed to the shared storage."""
    settings = settings_env(
        MLOPS_DATA_SOURCE="synthetic",
        MLOPS_BENCH_BATCHES="1",
        MLOPS_BENCH_NIGHTLY_BATCHES="1,4",
        MLOPS_BENCH_RUNS="5",
        MLOPS_BENCH_WARMUP="1",
        MLOPS_BENCH_MAX_SECONDS="1",
        MLOPS_BENCH_PROBE_CALLS="2",
        MLOPS_BENCH_PROVIDERS="cpu,cuda",
    )
    store = SnapshotStore(settings.snapshots_dir, settings.work_dir / "snapshots")
    with store.staging(FASHION_MNIST.name) as staging:
        write_fashion(staging, np.random.default_rng(0), (20, 40))
        snapshot = store.commit(FASHION_MNIST.name, staging, source="synthetic")
    ctx = RunContext("fashion_mnist_nightly", "manual__bench_source")
    files = run_files(settings, ctx)
    files.pull()
    checkpoint, onnx_fp32 = exported_cnn
    shutil.copy2(checkpoint, files.local / SPEC.checkpoint_name)
    shutil.copy2(onnx_fp32, files.local / "model_fp32.onnx")
    optimize_offline(files.local / "model_fp32.onnx", files.local / "model_fp32.opt.onnx")
    files.push()
    state = {
        "validation": "passed",
        "parity": {"fp32": True},
        "metrics": {"test_accuracy": 0.9},
        "checkpoint": str(files.local / SPEC.checkpoint_name),
        "onnx_fp32": str(files.local / "model_fp32.onnx"),
        "snapshot": snapshot.content_hash,
        "data_source": "synthetic",
        "workdir": str(files.local),
        "passing_variants": {},
        "bench_cpu_b1_p95_ms": {"onnx_fp32": 0.3},
        "mlflow_run_id": tracking.find_or_create_run(SPEC.name, ctx, settings),
    }
    return settings, ctx, state


def test_the_nightly_benchmark_times_onnx_and_only_the_fastest_native_path(cnn_run):
    settings, ctx, state = cnn_run
    result = benchmark_cpu(SPEC, ctx, state)
    report = json.loads((run_files(settings, ctx).local / "reports" / "benchmark_cpu.json").read_text())
    choice = report["native_choice"]["cpu"]
    assert set(choice["probes"]) == {"native_eager", "native_compiled"}  # eager and torch.compile
    assert choice["chosen"] == min(choice["probes"], key=lambda name: choice["probes"][name]["p50_ms"])
    assert all(1 <= probe["calls"] <= 2 for probe in choice["probes"].values())
    timed = {(r["variant"], r["batch"]) for r in report["rows"]}
    assert timed == {(v, b) for v in (choice["chosen"], "onnx_fp32") for b in (1, 4)}
    assert all(r["runs"] == 5 and r["peak_rss_mb"] > 0 for r in report["rows"])
    assert result["bench_cpu_native_path"] == choice["chosen"] and set(result["bench_cpu_b1_p50_ms"]) == {
        choice["chosen"],
        "onnx_fp32",
    }
    run = mlflow_client(settings.home).get_run(state["mlflow_run_id"])
    assert run.data.tags["bench_cpu_native_path"] == choice["chosen"]
    fp32_b4 = next(r for r in report["rows"] if (r["variant"], r["batch"]) == ("onnx_fp32", 4))
    assert run.data.metrics["bench_cpu_onnx_fp32_b4_p50_ms"] == fp32_b4["p50_ms"]
    assert not list(settings.work_dir.rglob("gpu_benchmark_input.json"))


@pytest.fixture
def registered_cnn(cnn_run):
    """Version 1 of the CNN, registered by the gate from the DAG run, then this machine's working folder removed."""
    settings, ctx, state = cnn_run
    assert registry.gate_and_register(SPEC, ctx, state, settings)["version"] == "1"
    shutil.rmtree(settings.work_dir)  # another host: nothing of the DAG run on this disk
    return settings


def test_make_bench_measures_the_registered_champion_from_the_registry_alone(registered_cnn, tmp_path):
    settings = registered_cnn
    out = tmp_path / "reports"
    argv = ["all", "--models", f"{SPEC.name},stock_forecaster", "--variants", "native_eager,onnx_fp32"]
    assert cli.main([*argv, "--out-dir", str(out), "--no-readme"]) == 0

    report = json.loads((out / "benchmark.json").read_text())
    cnn = report["models"][SPEC.name]
    assert cnn["registered_version"] == "1" and cnn["alias"] == "champion" and cnn["serving_variant"] == "fp32"
    assert cnn["speedup_target"] == SPEC.speedup_target and cnn["speedup_baseline"] == SPEC.speedup_baseline
    assert "no registered version of stock_forecaster" in report["models"]["stock_forecaster"]["skipped"]
    cpu = {(r["variant"], r["batch"]): r for r in report["rows"] if r["provider"] == "cpu"}
    assert set(cpu) == {("native_eager", 1), ("onnx_fp32", 1)}
    for row in cpu.values():
        assert row["runs"] == 5 and row["warmup"] == 1 and row["threads"] == 1 and row["p50_ms"] > 0
        assert row["parity_ok"] and row["peak_rss_mb"] >= row["rss_before_load_mb"] > 0
    fp32 = cpu[("onnx_fp32", 1)]
    assert fp32["execution_provider"] == "CPUExecutionProvider" and fp32["optimized_file"] is True
    assert fp32["parity_max_abs_diff"] <= SPEC.parity_rules.fp32_max_abs_diff and fp32["parity_agreement"] == 1.0
    assert cpu[("native_eager", 1)]["execution_provider"] == "torch:cpu"
    speedup = next(t for t in report["targets"] if t["model"] == SPEC.name and "native" in t["target"])
    assert speedup["ratio"] == round(cpu[("native_eager", 1)]["p50_ms"] / fp32["p50_ms"], 2)
    import torch

    if not torch.cuda.is_available():  # every GPU cell is empty and says why; none holds a number
        assert not [r for r in report["rows"] if r["provider"] == "cuda"]
        reasons = {n["variant"]: n["reason"] for n in report["notes"] if n["provider"] == "cuda"}
        assert reasons["onnx_fp32"].startswith("ProviderUnavailable: CUDAExecutionProvider requested")
        assert reasons["native_eager"]  # PyTorch's CUDA build is absent: the cell says so
    # The DAG run's folder was not needed: nothing came back to the working folder, and no state file exists.
    assert not (settings.work_dir / "fashion_mnist_nightly").exists()
    assert not list(settings.home.rglob("gpu_benchmark_input.json"))
    client = mlflow_client(settings.home)
    [bench_run] = client.search_runs([client.get_experiment_by_name("benchmarks").experiment_id])
    assert bench_run.data.metrics[f"{SPEC.name}.onnx_fp32.cpu.b1.p50_ms"] == fp32["p50_ms"]
    assert bench_run.data.tags[f"version.{SPEC.name}"] == "1"

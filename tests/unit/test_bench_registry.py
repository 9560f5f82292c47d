"""The benchmark harness on a real DAG run's files: the nightly `benchmark_cpu` stage (ONNX and the fastest
native path), and `make bench` on what the registry holds — a version registered in a real MLflow SQLite
registry, its files from the registry and the shared storage, on a machine whose working folder is empty —
and on the other candidates of its night, registered or not."""

import json
import shutil
import sys
import types
from dataclasses import replace

import numpy as np
import onnx
import pytest
from conftest import latest_run, mlflow_client, run_stage
from toy_spec import SPEC as TOY
from toy_spec import TOY_POINTS, ToySpec, write_points

from mlops_onnx import registry, tracking
from mlops_onnx.benchmarks import cli
from mlops_onnx.benchmarks.bundle import load_meta
from mlops_onnx.datasets import FASHION_MNIST
from mlops_onnx.models import Scored
from mlops_onnx.models.fashion import SPEC
from mlops_onnx.parity import passed_parity
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
        # Room for all 5 runs even on a loaded machine: past its budget a cell stops after 3 (timing.MIN_RUNS).
        MLOPS_BENCH_MAX_SECONDS="30",
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
    cnn = report["models"][f"{SPEC.name}/cnn"]  # the version's architecture
    assert cnn["registered_version"] == "1" and cnn["alias"] == "champion" and cnn["serving_variant"] == "fp32"
    assert cnn["model"] == SPEC.name and cnn["architecture"] == "cnn"
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
    assert bench_run.data.metrics[f"{SPEC.name}.cnn.onnx_fp32.cpu.b1.p50_ms"] == fp32["p50_ms"]
    assert bench_run.data.tags[f"version.{SPEC.name}.cnn"] == "1"


class ToyTrainingDiverged(RuntimeError):
    pass


class OneFeatureToySpec(ToySpec):
    """A second toy architecture: the softmax regression on x1 alone (a lower test accuracy than the model on
    both features, so the gate picks that one), with a preprocessing file beside its checkpoint, as a tokenizer
    or a scaler; it records the preprocessing folder its test rows are built with."""

    architecture = "softmax_x1"

    def __init__(self) -> None:
        self.preprocessing_seen = []

    def train(self, snapshot, workdir, settings, on_epoch):
        result = super().train(snapshot, workdir, settings, on_epoch)
        saved = dict(np.load(result.checkpoint))
        saved["weights"][1] = 0.0  # x2 ignored
        np.savez(result.checkpoint, **saved)
        rows = super().evaluation_data(snapshot, settings, workdir)
        accuracy = float(np.mean((rows.inputs @ saved["weights"] + saved["bias"]).argmax(1) == rows.targets))
        scale = workdir / "toy_scale.json"
        scale.write_text(json.dumps({"scale": 1.0}))
        val = result.validation.rows
        validation = Scored(val, val.inputs @ saved["weights"] + saved["bias"])
        return replace(result, metrics={"test_accuracy": accuracy}, preprocessing=[scale], validation=validation)

    def evaluation_data(self, snapshot, settings, workdir, preprocessing=None):
        self.preprocessing_seen.append(preprocessing)
        return super().evaluation_data(snapshot, settings, workdir, preprocessing)


class DivergingToySpec(ToySpec):
    """A third toy architecture whose training fails: its night stops at `train`."""

    architecture = "softmax_diverging"

    def train(self, snapshot, workdir, settings, on_epoch):
        raise ToyTrainingDiverged("toy training diverged")


ONE_FEATURE, DIVERGING = OneFeatureToySpec(), DivergingToySpec()


@pytest.fixture
def toy_night(settings_env, monkeypatch, tmp_path):
    """One night of a toy model with three candidate architectures, stage by stage as the DAG runs them: two get
    through parity and the gate registers the better one (the other is not chosen), the third fails in `train`
    (recorded on its run as the DAG's task wrapper records it). No nightly benchmark: the serving variant is fp32.
    Then this machine's working folder is removed: `make bench` reads MLflow and the shared storage only."""
    from mlops_onnx import catalog, tracking
    from mlops_onnx.tracking import RunContext

    write_points(tmp_path / "data")
    settings = settings_env(
        MLOPS_DATA_SOURCE="local",
        MLOPS_DATA_DIR=str(tmp_path / "data"),
        MLOPS_BENCH_BATCHES="1",
        MLOPS_BENCH_RUNS="5",
        MLOPS_BENCH_WARMUP="1",
        MLOPS_BENCH_MAX_SECONDS="1",
    )
    candidates = [catalog.Candidate(TOY.architecture, "toy_spec")]
    for spec in (ONE_FEATURE, DIVERGING):
        module = types.ModuleType(f"toy_spec_{spec.architecture}")
        module.SPEC = spec
        monkeypatch.setitem(sys.modules, module.__name__, module)
        candidates.append(catalog.Candidate(spec.architecture, module.__name__))
    entry = catalog.Pipeline(TOY.name, "toy_points", "toy_points_nightly", "Toy", TOY_POINTS, tuple(candidates))
    monkeypatch.setitem(catalog.PIPELINES, TOY.name, entry)
    ONE_FEATURE.preprocessing_seen.clear()

    ctx = RunContext(entry.dag_id, "night-1")
    night = run_stage("validate", TOY.name, ctx, run_stage("ingest", TOY.name, ctx))
    finished = []
    for candidate in run_stage("candidates", TOY.name, ctx, night):
        try:
            for stage in ("train", "export", "quantize", "parity"):
                candidate = run_stage(stage, TOY.name, ctx, candidate)
        except ToyTrainingDiverged as exc:
            failure = {"candidate_status": "failed", "failed_stage": "train", "failure_reason": str(exc)}
            tracking.set_run_tags(candidate["mlflow_run_id"], failure)
            continue
        finished.append(candidate)
    assert [c["architecture"] for c in finished] == [TOY.architecture, ONE_FEATURE.architecture]
    run_stage("gate_and_register", TOY.name, ctx, night, {"candidate_results": finished})
    shutil.rmtree(settings.work_dir)
    return settings


def test_make_bench_measures_every_candidate_of_the_champions_night_registered_or_not(toy_night, tmp_path):
    settings = toy_night
    client = mlflow_client(settings.home)
    champion = client.get_model_version_by_alias(TOY.name, "champion")
    assert champion.tags["architecture"] == TOY.architecture  # the two-feature model won the gate
    out = tmp_path / "reports"
    argv = ["all", "--models", TOY.name, "--providers", "cpu", "--variants", "onnx_fp32", "--out-dir", str(out)]
    assert cli.main([*argv, "--no-readme"]) == 0

    report = json.loads((out / "benchmark.json").read_text())
    keys = {a: f"{TOY.name}/{a}" for a in (TOY.architecture, ONE_FEATURE.architecture, DIVERGING.architecture)}
    assert set(report["models"]) == set(keys.values())
    chosen, other, failed = (report["models"][keys[a]] for a in keys)
    night = latest_run(client, TOY.name).info.run_id
    assert chosen["architecture"] == TOY.architecture and chosen["model"] == TOY.name
    assert (chosen["registered_version"], chosen["alias"], chosen["serving_variant"]) == ("1", "champion", "fp32")
    assert chosen["candidate_status"] == "chosen" and chosen["mlflow_run_id"] == champion.run_id
    assert other["architecture"] == ONE_FEATURE.architecture and other["model"] == TOY.name
    assert other["registered_version"] is None and other["alias"] is None and other["serving_variant"] is None
    assert other["candidate_status"] == "not chosen"
    assert other["mlflow_run_id"] == latest_run(client, TOY.name, architecture=ONE_FEATURE.architecture).info.run_id
    assert chosen["night_run_id"] == other["night_run_id"] == night
    assert failed["skipped"] == "failed in train: toy training diverged"
    assert failed["architecture"] == DIVERGING.architecture and failed["registered_version"] is None
    assert failed["candidate_status"] == "failed"

    # One row per architecture that got through export, each measuring its own model.
    rows = {r["architecture"]: r for r in report["rows"]}
    assert len(report["rows"]) == 2 and set(rows) == {TOY.architecture, ONE_FEATURE.architecture}
    assert (
        rows[TOY.architecture]["registered_version"] == "1"
        and rows[ONE_FEATURE.architecture]["registered_version"] is None
    )
    assert all(r["variant"] == "onnx_fp32" and r["model"] == TOY.name and r["parity_ok"] for r in rows.values())
    bundle_dir = settings.bench_dir / "bundle"
    for architecture in (TOY.architecture, ONE_FEATURE.architecture):
        bundle = bundle_dir / f"{TOY.name}.{architecture}"
        props = {p.key: p.value for p in onnx.load(str(bundle / "onnx" / "fp32.onnx")).metadata_props}
        assert props["architecture"] == architecture  # export's provenance, from the registry or the run's files
        run = latest_run(client, TOY.name, architecture=architecture)
        passed = {v for v, ok in passed_parity(run.data.metrics).items() if ok}
        assert set(load_meta(bundle)["onnx_variants"]) == passed | {"fp32"}
    # The unregistered candidate's test rows were encoded with the preprocessing its run logged.
    [preprocessing] = [p for p in ONE_FEATURE.preprocessing_seen if p is not None]
    assert (preprocessing / "toy_scale.json").is_file() and preprocessing.is_relative_to(bundle_dir)

    speedups = {t["architecture"] for t in report["targets"] if "native" in t["target"]}
    assert speedups == set(keys)
    assert [t["architecture"] for t in report["targets"] if "serving" in t["target"]] == [TOY.architecture]
    text = (out / "benchmark.md").read_text()
    assert f"## {keys[ONE_FEATURE.architecture]}\n\nNot registered (not chosen)" in text
    assert f"## {keys[DIVERGING.architecture]}\n\nNot measured: failed in train: toy training diverged." in text
    client = mlflow_client(settings.home)
    [bench_run] = client.search_runs([client.get_experiment_by_name("benchmarks").experiment_id])
    for architecture, row in rows.items():
        assert bench_run.data.metrics[f"{TOY.name}.{architecture}.onnx_fp32.cpu.b1.p50_ms"] == row["p50_ms"]
    assert bench_run.data.tags[f"version.{TOY.name}.{ONE_FEATURE.architecture}"] == "not registered"

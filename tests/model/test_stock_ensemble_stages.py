"""The stock ensemble candidate through the pipeline's own stages on the real sample (quick profile): ingest,
validate, candidates, train, export, quantize, parity and benchmark_cpu, with this machine's run folder
wiped after train, export and parity, so its folder checkpoint (`members/`) travels through the shared
storage as the DAG's tasks on other machines see it."""

import shutil

from conftest import HAS_SHARED_DATA, SHARED_DATA, mlflow_client, run_stage

from mlops_onnx.models.stocks_ensemble import SPEC
from mlops_onnx.stages import run_files
from mlops_onnx.tracking import RunContext

MODEL = SPEC.name


def test_the_ensemble_trains_exports_passes_parity_and_benchmarks_through_the_stages(settings_env):
    local = {"MLOPS_DATA_SOURCE": "local", "MLOPS_DATA_DIR": str(SHARED_DATA)}
    settings = settings_env(
        **(local if HAS_SHARED_DATA else {"MLOPS_DATA_SOURCE": "synthetic"}),
        MLOPS_CANDIDATES_STOCKS="ensemble",
        MLOPS_BENCH_NIGHTLY_BATCHES="1",
        MLOPS_BENCH_RUNS="5",
        MLOPS_BENCH_WARMUP="1",
        MLOPS_BENCH_MAX_SECONDS="1",
        MLOPS_BENCH_PROBE_CALLS="2",
    )
    ctx = RunContext("stock_forecast_nightly", "ensemble-night")
    night = run_stage("validate", MODEL, ctx, run_stage("ingest", MODEL, ctx))
    (candidate,) = run_stage("candidates", MODEL, ctx, night)
    assert candidate["architecture"] == "ensemble"
    files = run_files(settings, ctx)

    trained = run_stage("train", MODEL, ctx, candidate)
    assert trained["checkpoint"] == files.remote.url_of("ensemble/members")
    assert files.remote.files("ensemble/members") == ["lstm.keras", "transformer.keras"]
    shutil.rmtree(files.local)  # the next task runs on another machine
    exported = run_stage("export", MODEL, ctx, trained)
    shutil.rmtree(files.local)
    quantized = run_stage("quantize", MODEL, ctx, exported)
    assert {name: info["status"] for name, info in quantized["variants"].items()} == {
        "int8_dynamic": "built",
        "fp16": "built",
    }
    checked = run_stage("parity", MODEL, ctx, quantized)
    assert checked["parity"] == {"fp32": True, "int8_dynamic": True, "fp16": True}
    assert checked["parity_fp32_max_abs_diff"] <= SPEC.parity_rules.fp32_max_abs_diff

    members = files.local / "ensemble" / "members"  # pulled again by parity, which reads the checkpoint
    run = mlflow_client(settings.home).get_run(trained["mlflow_run_id"])
    metrics = run.data.metrics
    assert metrics["size_native_bytes"] == sum(p.stat().st_size for p in members.iterdir())
    assert {"lstm_train_loss", "transformer_val_loss", "lstm_best_val_loss", "baseline_naive_test_mase"} <= set(metrics)
    assert metrics["test_mase"] == trained["metrics"]["test_mase"]
    assert run.data.tags["architecture"] == "ensemble" and run.data.params["members"] == "lstm,transformer"
    assert run.data.tags["parity_status"] == "passed"

    shutil.rmtree(files.local)
    benched = run_stage("benchmark_cpu", MODEL, ctx, checked)
    assert benched["bench_cpu_native_path"] in ("native_eager", "native_predict", "native_compiled")
    assert set(benched["bench_cpu_b1_p50_ms"]) == {
        benched["bench_cpu_native_path"],
        "onnx_fp32",
        "onnx_int8_dynamic",
        "onnx_fp16",
    }

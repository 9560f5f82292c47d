"""Memory stays within MLOPS_MEMORY_BUDGET_MB on full-size data: the synthetic Fashion-MNIST at the real
dataset's size (60,000 + 10,000 images) and the whole shared stock sample (or the synthetic archive).

Each stage runs in a fresh process, as an Airflow worker runs one task, with one epoch (for fashion,
its first 50 batches) and short benchmarks; the peak RSS every stage logged to MLflow
(`peak_rss_mb_<stage>`) must be within the budget, and the pipeline's own check must not have flagged any stage."""

import subprocess
import sys

import pytest
from conftest import HAS_SHARED_DATA, SHARED_DATA, latest_run, mlflow_client, pipeline_env
from fault_support import HERE

from mlops_onnx.settings import DEFAULT_MEMORY_BUDGET_MB

pytestmark = pytest.mark.e2e
# quantize and parity are left out for time (parity alone runs five models over the 10,000 test images):
# the benchmark then times the native model and ONNX fp32.
STAGES = ("ingest", "validate", "train", "export", "benchmark_cpu")
FULL_SIZE = {  # model -> settings for full-size data
    # 50 batches of the epoch: memory is set by the data held (all 54,000 training images), not the steps.
    "fashion_mnist_classifier": {
        "MLOPS_DATA_SOURCE": "synthetic",
        "MLOPS_SYNTHETIC_SIZE": "kaggle",
        "MLOPS_MAX_TRAIN_BATCHES": "50",
    },
    "stock_forecaster": {"MLOPS_DATA_SOURCE": "local", "MLOPS_DATA_DIR": str(SHARED_DATA)}
    if HAS_SHARED_DATA
    else {"MLOPS_DATA_SOURCE": "synthetic", "MLOPS_SYNTHETIC_SIZE": "kaggle", "MLOPS_SYNTHETIC_SCALE": "0.01"},
}


@pytest.mark.parametrize("model", list(FULL_SIZE))
def test_full_size_training_and_benchmark_stay_within_the_memory_budget(tmp_path, model):
    home = tmp_path / "home"
    env = pipeline_env(
        home,
        MLOPS_PROFILE="full",
        MLOPS_EPOCHS="1",
        MLOPS_BENCH_RUNS="10",
        MLOPS_BENCH_WARMUP="2",
        MLOPS_BENCH_MAX_SECONDS="2",
        **FULL_SIZE[model],
    )
    state = tmp_path / "state.json"
    for stage in STAGES:
        done = subprocess.run(
            [sys.executable, str(HERE / "stage_driver.py"), model, stage, str(state)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        sys.stdout.write(done.stdout[-3000:])
        assert done.returncode == 0, (stage, done.stderr[-3000:])
        assert "MEMORY BUDGET EXCEEDED" not in done.stderr, (stage, done.stderr[-2000:])

    run = latest_run(mlflow_client(home), model)
    metrics = run.data.metrics
    if model == "fashion_mnist_classifier":
        assert metrics["data_rows_fashion_mnist_train"] == 60000 and metrics["data_rows_fashion_mnist_test"] == 10000
        assert metrics["train_rows"] + metrics["val_rows"] == 60000 and metrics["test_rows"] == 10000
    else:
        assert metrics["data_files_passed"] >= 3
    assert metrics["memory_budget_mb"] == DEFAULT_MEMORY_BUDGET_MB
    peaks = {stage: metrics[f"peak_rss_mb_{stage}"] for stage in STAGES}
    print(f"{model} peak RSS (MB) per stage: {peaks}")
    assert all(0 < peak <= DEFAULT_MEMORY_BUDGET_MB for peak in peaks.values()), peaks
    assert not [tag for tag in run.data.tags if tag.startswith("memory_budget_exceeded_")]


def test_a_stage_over_the_budget_is_flagged_in_mlflow(settings_env, caplog):
    import mlflow

    from mlops_onnx import monitoring, tracking

    settings = settings_env(MLOPS_MEMORY_BUDGET_MB="1")
    tracking.configure(settings)
    with mlflow.start_run() as run:
        pass

    @monitoring.measured
    def hungry(model, ctx, state):
        return state

    hungry("fashion_mnist_classifier", None, {"mlflow_run_id": run.info.run_id})
    tags = mlflow_client(settings.home).get_run(run.info.run_id).data.tags
    assert tags["memory_budget_exceeded_hungry"].startswith("hungry peaked at ")
    assert tags["memory_budget_exceeded_hungry"].endswith("over the memory budget of 1 MB")
    assert "MEMORY BUDGET EXCEEDED" in caplog.text
    assert monitoring.over_budget("train", 900.0, 1024.0) is None and monitoring.over_budget("t", 9.0, None) is None

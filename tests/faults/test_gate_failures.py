"""Parity and gate failures through the whole DAG: a quantized variant that breaks accuracy and a
corrupted variant file are dropped with their reasons (the run still registers, never serving them); an
fp32 export whose outputs drift and a truncated fp32 file fail the run at `parity`, with the reason in
MLflow, no new version, and `champion` left where it was.

The faults are injected by the test-only Airflow policy (`airflow_local_settings.py`) just before the
`parity` task: the files on disk are changed after `export`/`quantize` wrote them."""

import pytest
from conftest import latest_run, mlflow_client
from fault_support import FASHION, FASHION_DAG, dags_test, install_fault_policy, small_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("gate-failures")


@pytest.fixture(scope="module")
def night(home):
    """A run whose int8 static variant is scrambled (loads, runs, wrong answers) and whose fp16 file is cut."""
    env = install_fault_policy(small_env(home), "parity:break_int8_static+truncate_fp16")
    done = dags_test(FASHION_DAG, env, "2026-11-04")
    assert done.returncode == 0, done.stdout[-3000:]
    return latest_run(mlflow_client(home), FASHION, architecture="cnn")


def test_a_variant_that_breaks_accuracy_or_will_not_load_is_dropped_with_its_reason(home, night):
    client = mlflow_client(home)
    tags, metrics = night.data.tags, night.data.metrics
    assert tags["parity_int8_static"].startswith("failed: label agreement")
    assert tags["parity_fp16"].startswith("failed: could not run")
    assert metrics["parity_int8_static_passed"] == 0 and metrics["parity_fp16_passed"] == 0
    assert tags["parity_fp32"] == "passed" and tags["parity_int8_dynamic"] == "passed"
    assert not any(key.startswith(("bench_cpu_onnx_int8_static", "bench_cpu_onnx_fp16")) for key in metrics)

    version = client.get_model_version_by_alias(FASHION, "champion")
    assert version.run_id == night.info.run_id
    assert version.tags["variants_passed"] == "int8_dynamic"
    assert version.tags["serving_variant"] == tags["serving_variant"] in ("fp32", "int8_dynamic")
    shipped = {a.path for a in client.list_artifacts(night.info.run_id, "variants")}
    assert shipped == {"variants/model_int8_dynamic.onnx"}


@pytest.mark.parametrize(("fault", "reason"), [("drift_fp32", "max abs diff"), ("truncate_fp32", "could not run")])
def test_a_broken_fp32_export_fails_at_parity_and_never_becomes_champion(home, night, fault, reason):
    # The same data, code and config as the first night: forced, or the night would skip training as unchanged.
    env = install_fault_policy(small_env(home, MLOPS_FORCE_RETRAIN="1"), f"parity:{fault}")
    done = dags_test(FASHION_DAG, env, {"drift_fp32": "2026-11-05", "truncate_fp32": "2026-11-06"}[fault])
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "parity failed" in output and reason in output
    assert "▶ benchmark_cpu started" not in output
    # The gate runs after every candidate, and fails the night: its only candidate stopped at parity.
    assert "No candidate got through: cnn: failed in parity" in output

    client = mlflow_client(home)
    run = latest_run(client, FASHION, architecture="cnn")
    assert run.info.run_id != night.info.run_id
    assert run.data.tags["parity_status"] == "failed" and run.data.tags["gate_status"] == "rejected"
    assert run.data.tags["gate_reason"].startswith("fp32 parity failed: ") and reason in run.data.tags["gate_reason"]
    assert run.data.tags["candidate_status"] == "failed" and run.data.tags["failed_stage"] == "parity"
    assert run.data.tags["parity_fp32"].startswith("failed: ") and run.data.metrics["parity_fp32_passed"] == 0
    assert [str(v.version) for v in client.search_model_versions(f"name='{FASHION}'")] == ["1"]
    assert client.get_model_version_by_alias(FASHION, "champion").run_id == night.info.run_id

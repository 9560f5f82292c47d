"""The benchmark report's arithmetic: targets from one run's rows, the docs' performance table, Airflow's overhead."""

import pytest

from mlops_onnx.benchmarks import report as bench
from mlops_onnx.cli import add_airflow_overhead, night_task_seconds

# Each model's target as its spec sets it (`speedup_target`, `speedup_baseline`), kept in the report.
TARGETS = {
    "fashion_mnist_classifier": {"speedup_target": 3.0, "speedup_baseline": "native_eager"},
    "fake_news_classifier": {"speedup_target": 10.0, "speedup_baseline": None},
    "stock_forecaster": {"speedup_target": 10.0, "speedup_baseline": None},
}


# The architecture a row measured when a test does not say: the task's first candidate.
FIRST_ARCHITECTURE = {"fashion_mnist_classifier": "cnn", "fake_news_classifier": "lstm", "stock_forecaster": "lstm"}


def row(model, variant, p50, batch=1, provider="cpu", architecture=None, **extra):
    return {
        "model": model,
        "architecture": architecture or FIRST_ARCHITECTURE[model],
        "variant": variant,
        "provider": provider,
        "batch": batch,
        "p50_ms": p50,
        "p95_ms": p50 * 1.1,
        "p99_ms": p50 * 1.2,
        "throughput_per_s": batch * 1000 / p50,
        "size_bytes": 1000,
        "peak_rss_mb": 100.0,
        "parity_ok": True,
        "parity_reasons": [],
        "parity_max_abs_diff": 1e-6,
        **extra,
    }


def report(rows, serving=None, skipped=(), unregistered=()):
    """A report of `rows`; every architecture measured is registered (version 1, @champion) but those in
    `unregistered` (subject keys, e.g. "stock_forecaster/transformer")."""
    models = {}
    for r in rows:
        key = bench.subject_key(r)
        registered = key not in unregistered
        models[key] = {
            "model": r["model"],
            "architecture": r["architecture"],
            "serving_variant": (serving or {}).get(r["model"], "fp32") if registered else None,
            "registered_version": "1" if registered else None,
            "alias": "champion" if registered else None,
            "candidate_status": "chosen" if registered else "not chosen",
            "mlflow_run_id": f"run-{key}",
            "data_hash": "ab" * 32,
            **TARGETS[r["model"]],
        }
    models |= {m: {"skipped": "no registered version of " + m, **TARGETS[m]} for m in skipped}
    return {
        "rows": rows,
        "models": models,
        "notes": [],
        "profiles": {},
        "generated_at": "2026-11-30T00:00:00+00:00",
        "machine": {"cpu_model": "test cpu", "cpu_cores": 2, "python": "3.11", "versions": {}, "gpu": None},
        "settings": {"threads": 1, "warmup": 1, "runs": 5, "max_seconds_per_cell": 1, "batches": "1"},
    }


def test_targets_use_eager_for_the_cnn_and_the_fastest_keras_path():
    rows = [
        row("fashion_mnist_classifier", "native_eager", 0.9),
        row("fashion_mnist_classifier", "native_compiled", 0.3),
        row("fashion_mnist_classifier", "onnx_fp32", 0.25),
        row("fashion_mnist_classifier", "onnx_int8_static", 0.2),
        row("stock_forecaster", "native_eager", 80.0),
        row("stock_forecaster", "native_compiled", 0.5),
        row("stock_forecaster", "native_predict", 100.0),
        row("stock_forecaster", "onnx_fp32", 0.1),
        row("stock_forecaster", "onnx_int8_dynamic", 0.12),
    ]
    r = report(
        rows,
        serving={"fashion_mnist_classifier": "int8_static", "stock_forecaster": "int8_dynamic"},
        skipped=["fake_news_classifier"],
    )
    result = {(t["model"], "serving" if "serving" in t["target"] else "speedup"): t for t in bench.targets(r)}
    cnn = result[("fashion_mnist_classifier", "speedup")]
    assert cnn["ratio"] == 3.6 and cnn["met"] and "native_eager" in cnn["target"]
    lstm = result[("stock_forecaster", "speedup")]  # against tf.function, the fastest Keras path, not eager
    assert lstm["ratio"] == 5.0 and lstm["met"] is False and "missed by 2.00×" in lstm["detail"]
    not_measured = result[("fake_news_classifier", "speedup")]  # not measured: said, with why, not guessed
    assert not_measured["met"] is None and "no registered version of fake_news_classifier" in not_measured["detail"]
    assert ("fake_news_classifier", "serving") not in result
    assert "Not measured: no registered version of fake_news_classifier." in bench.markdown(
        r | {"targets": bench.targets(r)}
    )
    assert result[("fashion_mnist_classifier", "serving")]["met"] is True
    slower = result[("stock_forecaster", "serving")]
    assert slower["met"] is False and "1.20× slower" in slower["detail"]


def test_readme_table_is_replaced_between_the_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench.README_START}\nold table\n{bench.README_END}\nrest\n")
    r = report([row("stock_forecaster", "onnx_fp32", 0.1), row("stock_forecaster", "native_eager", 80.0)])
    r["targets"] = bench.targets(r)
    assert bench.update_readme(bench.readme_table(r), readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{bench.README_END}\nrest\n") and "old table" not in text
    assert "| stock_forecaster | lstm | v1 @champion | onnx_fp32 | 0.100 |" in text and "test cpu" in text
    plain = tmp_path / "other.md"
    plain.write_text("no markers\n")
    assert not bench.update_readme("x", plain) and plain.read_text() == "no markers\n"


def test_two_architectures_of_one_model_keep_their_own_rows_targets_and_registration():
    rows = [
        row("stock_forecaster", "native_compiled", 0.5),
        row("stock_forecaster", "onnx_fp32", 0.1),
        row("stock_forecaster", "native_compiled", 2.0, architecture="transformer"),
        row("stock_forecaster", "onnx_fp32", 0.4, architecture="transformer"),
    ]
    r = report(rows, unregistered=["stock_forecaster/transformer"])
    r["models"]["stock_forecaster/ensemble"] = {
        "model": "stock_forecaster",
        "architecture": "ensemble",
        "registered_version": None,
        "candidate_status": "failed",
        "skipped": "failed in train: out of memory",
        **TARGETS["stock_forecaster"],
    }
    r["targets"] = bench.targets(r)
    assert bench.find_row(rows, "stock_forecaster/lstm", "onnx_fp32")["p50_ms"] == 0.1
    assert bench.find_row(rows, "stock_forecaster/transformer", "onnx_fp32")["p50_ms"] == 0.4
    speedups = {t["architecture"]: t for t in r["targets"] if "native" in t["target"]}
    assert speedups["lstm"]["ratio"] == 5.0 and speedups["transformer"]["ratio"] == 5.0
    assert speedups["ensemble"]["met"] is None and "failed in train: out of memory" in speedups["ensemble"]["detail"]
    # Only a registered version serves: the other candidates have no serving target.
    assert [t["architecture"] for t in r["targets"] if "serving" in t["target"]] == ["lstm"]

    table = bench.readme_table(r)
    assert "| stock_forecaster | lstm | v1 @champion | onnx_fp32 | 0.100 | ok |" in table
    assert "| stock_forecaster | transformer | not registered (not chosen) | onnx_fp32 | 0.400 | ok |" in table
    assert "| stock_forecaster/transformer: ONNX fp32 ≥ 10× native_compiled" in table
    text = bench.markdown(r)
    for section in ("## stock_forecaster/lstm", "## stock_forecaster/transformer", "## stock_forecaster/ensemble"):
        assert section in text
    assert "Registered version v1 @champion, serving variant `fp32`; MLflow run `run-stock_forecaster/lstm`" in text
    assert "Not registered (not chosen); MLflow run `run-stock_forecaster/transformer`" in text
    assert "Not measured: failed in train: out of memory." in text


def test_every_spec_carries_its_speed_up_target():
    from mlops_onnx.catalog import PIPELINES
    from mlops_onnx.models import load_spec

    for model in PIPELINES:
        spec = load_spec(model)
        assert {"speedup_target": spec.speedup_target, "speedup_baseline": spec.speedup_baseline} == TARGETS[model]
        assert spec.framework in ("torch", "keras") and spec.checkpoint_name.endswith((".pt", ".keras"))


def test_airflow_overhead_is_dag_time_outside_task_bodies():
    summary = {"models": {"a": {"task_seconds": {"train": 60.0, "ingest": 20.0}}, "b": {"task_seconds": {}}}}
    out = add_airflow_overhead(summary, {"a": 100.0, "b": 30.0})
    a = out["models"]["a"]
    assert a["airflow_overhead_seconds"] == 20.0 and a["airflow_overhead_share"] == 0.2 and a["dag_seconds"] == 100.0
    b = out["models"]["b"]  # no task timings (a failed run): its wall time, but no made-up share
    assert b["dag_seconds"] == 30.0 and "airflow_overhead_share" not in b
    assert out["airflow_overhead"] == {
        "dag_seconds": 100.0,
        "task_seconds": 80.0,
        "overhead_seconds": 20.0,
        "overhead_share": 0.2,
    }


def test_the_report_names_the_gpu_and_the_stack_its_cells_loaded():
    gpu_row = row("fashion_mnist_classifier", "onnx_fp32", 0.05, provider="cuda", io_binding=True, cuda_graph=True)
    r = report([row("fashion_mnist_classifier", "onnx_fp32", 0.25), gpu_row])
    stack = {
        "cudart": "13.0",
        "cuda": "13.0",
        "cudnn": "9.13.0",
        "onnxruntime": "1.31.1",
        "onnxruntime_built_for_cuda": "13.0",
        "torch_cuda": "13.0",
        "torch_cudnn": "9.10.2",
    }
    r["machine"] |= {"gpu": "NVIDIA H200, 143771 MiB, 580.159.04, 9.0", "gpu_stack": {"cuda": stack}}
    r["targets"] = bench.targets(r)
    described = (
        "NVIDIA H200 (143771 MiB, compute capability 9.0), driver 580.159.04; CUDA runtime 13.0, CUDA driver "
        "API 13.0, cuDNN 9.13.0, ONNX Runtime 1.31.1 (built for CUDA 13.0), PyTorch built for CUDA 13.0 with "
        "cuDNN 9.10.2, TensorRT not loaded"
    )
    assert f"GPU {described}" in bench.markdown(r)
    table = bench.readme_table(r)
    header = "| model | architecture | registered | variant | CPU b=1 | CUDA graph b=1 | parity |"
    assert f"GPU {described}" in table and header in table
    assert "| fashion_mnist_classifier | cnn | v1 @champion | onnx_fp32 | 0.250 | 0.050 | ok |" in table


def test_the_nights_task_time_counts_every_candidate_as_dags_test_runs_them_one_after_another():
    candidates = {
        "lstm": {"task_seconds": {"train": 124.0, "parity": 5.0}},
        "minilm": {"task_seconds": {"train": 447.0, "benchmark_cpu": 104.0}},
    }
    seconds = night_task_seconds({"task_seconds_ingest": 1.1, "test_f1": 0.9, "task_seconds_prune": 0.1}, candidates)
    assert seconds == {"ingest": 1.1, "prune": 0.1, "candidates": 680.0}
    assert add_airflow_overhead({"models": {"m": {"task_seconds": seconds}}}, {"m": 700.0})["models"]["m"][
        "airflow_overhead_seconds"
    ] == pytest.approx(18.8)

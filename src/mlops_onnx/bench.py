"""`make bench`: one benchmark of every registered model, variant, provider and batch size.

Three steps, each a sub-command, so that the measuring part can run on a machine that has nothing
but numpy, ONNX Runtime (and torch for the CNN):

1. `prepare` — for each model, the champion version in MLflow (else the newest run that exported a
   model) and the working folder its Airflow run left: copy the native checkpoint, every ONNX
   variant that was built, an offline-optimised copy of each (`optimized_model_filepath`), a
   fixed sample of test inputs and the native model's outputs on them into a *bundle* folder.
2. `run` — one fresh interpreter per cell (model, variant, provider and, on a GPU, how the session
   is fed: host arrays, I/O binding, CUDA graph): load, on a GPU check that no computation fell
   back to the CPU, check parity against the native outputs, then time batch sizes 1/8/64/256
   (warm-up, fixed runs, fixed threads), reading the process's peak RSS after each. Rows go to
   `benchmark.json`, with the machine and the GPU stack the workers loaded; then step 3 on them.
3. `report` — `benchmark.md`, PNG charts, the targets (ONNX vs native, serving variant vs fp32)
   with ONNX Runtime's profile where one is missed, the README table, and one MLflow run holding it
   all. `report --from DIR/benchmark.json` does it again alone, e.g. on the file a GPU machine's
   `run --no-readme --no-mlflow` wrote.

`python -m mlops_onnx.bench all` (what `make bench` runs) does the three in a row. Every ratio in
the report comes from the rows of that one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mlops_onnx.benchmark import batch_of, gpu_stack, machine_info, time_calls
from mlops_onnx.parity import ParityRules, compare

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORTS = REPO_ROOT / "reports"
BATCHES = (1, 8, 64, 256)
SAMPLE_ROWS = 256  # test inputs in a bundle: the largest batch, and the parity sample
NATIVE_VARIANTS = ("native_eager", "native_compiled", "native_predict")
TORCH_NATIVES = ("native_eager", "native_compiled")  # eager and torch.compile; PyTorch has no `predict`
KERAS_NATIVES = ("native_eager", "native_compiled", "native_predict")  # call, tf.function, model.predict
ONNX_VARIANTS = ("fp32", "int8_static", "int8_dynamic", "fp16")
README_START, README_END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
# Targets of issue 9, measured at batch 1 on the CPU provider: ONNX fp32 this many times faster
# than the native path (the fastest Keras path for the Keras models).
SPEEDUP_TARGETS = {"fashion_mnist_cnn": 3.0, "fake_news_rnn": 10.0, "stock_lstm": 10.0}
OUTPUT_KINDS = {"fashion_mnist_cnn": "multiclass", "fake_news_rnn": "binary", "stock_lstm": "regression"}


# --------------------------------------------------------------------------------------------- prepare
def _source_runs(client, model: str):
    """(run, registered version): the champion's run first, then the newest runs of the model."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(model, "champion")
        yield client.get_run(version.run_id), str(version.version)
    except MlflowException:
        pass
    experiment = client.get_experiment_by_name(model)
    if experiment is not None:
        for run in client.search_runs(
            [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=20
        ):
            yield run, run.data.tags.get("registered_version")


def _run_state(settings, run) -> dict | None:
    """The DAG run's state (the input the GPU benchmark task saved) from the run's working folder."""
    from mlops_onnx.stages import GPU_STATE_FILE, run_files
    from mlops_onnx.tracking import RunContext

    tags = run.data.tags
    ctx = RunContext(dag_id=tags.get("airflow_dag_id", ""), run_id=tags.get("airflow_run_id", ""))
    path = run_files(settings, ctx).local / GPU_STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def prepare(bundle_dir: Path, models: list[str]) -> dict:
    """Write one bundle per model; returns {model: meta or {"skipped": reason}}."""
    from mlflow import MlflowClient

    from mlops_onnx import tracking
    from mlops_onnx.models import load_spec
    from mlops_onnx.runtime import optimize_offline
    from mlops_onnx.settings import get_settings
    from mlops_onnx.snapshots import SnapshotStore

    settings = get_settings()
    tracking.configure(settings)
    client = MlflowClient()
    shutil.rmtree(bundle_dir, ignore_errors=True)
    prepared: dict[str, dict] = {}
    for model in models:
        run = version = state = None
        for candidate, candidate_version in _source_runs(client, model):
            if (state := _run_state(settings, candidate)) is not None:
                run, version = candidate, candidate_version
                break
        if state is None:
            prepared[model] = {
                "skipped": f"no run of {model} with its working folder under {settings.work_dir}: run `make demo` first"
            }
            print(f"[bench] {model}: skipped ({prepared[model]['skipped']})", flush=True)
            continue
        spec = load_spec(model)
        out = bundle_dir / model
        (out / "onnx").mkdir(parents=True)
        workdir = Path(state["workdir"])
        snapshot = SnapshotStore(settings.snapshots_dir).get(spec.dataset.name, state["snapshot"])
        rows = spec.evaluation_data(snapshot, settings, workdir)
        inputs, targets = rows.inputs, rows.targets
        inputs, targets = batch_of(inputs, SAMPLE_ROWS), batch_of(np.asarray(targets), SAMPLE_ROWS)
        checkpoint = Path(state["checkpoint"])
        shutil.copy2(checkpoint, out / checkpoint.name)
        reference = spec.native_predictors(checkpoint, settings)["native_eager"](inputs)
        np.save(out / "inputs.npy", inputs)
        np.save(out / "targets.npy", targets)
        np.save(out / "reference.npy", np.asarray(reference, dtype=np.float32))
        onnx_files = {"fp32": state["onnx_fp32"]} | {
            name: info["path"] for name, info in state.get("variants", {}).items() if info.get("status") == "built"
        }
        for name, path in onnx_files.items():
            shutil.copy2(path, out / "onnx" / f"{name}.onnx")
            saved = Path(path).with_suffix(".opt.onnx")  # written once by the pipeline (older runs: made here)
            if saved.is_file():
                shutil.copy2(saved, out / "onnx" / f"{name}.opt.onnx")
            else:
                optimize_offline(path, out / "onnx" / f"{name}.opt.onnx")
        tags = run.data.tags
        meta = {
            "model": model,
            "registered_version": version,
            "mlflow_run_id": run.info.run_id,
            "airflow_run_id": tags.get("airflow_run_id"),
            "data_hash": tags.get("data_hash"),
            "serving_variant": tags.get("serving_variant"),
            "checkpoint": checkpoint.name,
            "checkpoint_bytes": checkpoint.stat().st_size,
            "output_kind": OUTPUT_KINDS[model],
            "parity_rules": spec.parity_rules.__dict__,
            "onnx_variants": sorted(onnx_files),
            "pipeline_parity": state.get("parity", {}),
            "sample_rows": SAMPLE_ROWS,
            "native_variants": list(KERAS_NATIVES if checkpoint.suffix == ".keras" else TORCH_NATIVES),
            "native_quality": quality(OUTPUT_KINDS[model], np.asarray(reference), targets),
        }
        (out / "meta.json").write_text(json.dumps(meta, indent=2))
        prepared[model] = meta
        print(
            f"[bench] {model}: version {version or '(not registered)'} of run {run.info.run_id}, "
            f"variants {', '.join(sorted(onnx_files))}",
            flush=True,
        )
    return prepared


# ---------------------------------------------------------------------------------------------- worker
def quality(kind: str, outputs: np.ndarray, targets: np.ndarray) -> float:
    """Accuracy (multiclass), F1 of the positive class (binary) or MAE (regression), in numpy alone."""
    if kind == "multiclass":
        return float(np.mean(outputs.argmax(1) == targets))
    if kind == "binary":
        predicted, actual = outputs.reshape(-1) >= 0.5, targets.reshape(-1) == 1
        tp = float(np.sum(predicted & actual))
        denominator = float(np.sum(predicted) + np.sum(actual))
        return 2 * tp / denominator if denominator else 0.0
    return float(np.mean(np.abs(outputs.reshape(-1) - targets.reshape(-1))))


def labels(kind: str, outputs: np.ndarray) -> np.ndarray | None:
    if kind == "multiclass":
        return outputs.argmax(1)
    if kind == "binary":
        return (outputs.reshape(-1) >= 0.5).astype(np.int64)
    return None


def rss_mb(field: str = "VmHWM") -> float | None:
    """This process's peak (VmHWM) or current (VmRSS) resident memory, MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


BINDINGS = ("host", "io_binding", "cuda_graph")  # how an ONNX cell feeds its session; see _onnx_predictor


def _model_file(bundle: Path, variant: str, provider: str) -> Path:
    """The file a session of `variant` loads: the offline-optimised copy on the CPU provider; the plain file
    on the others, since the saved graph holds CPU-only fused kernels that would run on the CPU there."""
    raw, optimized = bundle / "onnx" / f"{variant}.onnx", bundle / "onnx" / f"{variant}.opt.onnx"
    return optimized if optimized.is_file() and provider == "cpu" else raw


def _onnx_predictor(bundle: Path, variant: str, provider: str, threads: int, binding: str = "host"):
    """(predict, fetch, info) for an ONNX variant. `binding`: "host" feeds numpy arrays (copies to and
    from the device are timed); "io_binding" copies each input to the provider's device once and leaves
    the output there (only the run is timed); "cuda_graph" also replays the run as one CUDA graph, with a
    session per input shape, since a graph is captured for fixed shapes and buffer addresses. `fetch`
    returns the output on the host, for parity. On a GPU provider the first session is a profiled run
    that fails the cell if any computation fell back to the CPU (runtime.check_placement)."""
    from mlops_onnx.runtime import check_placement, make_session

    raw, path = bundle / "onnx" / f"{variant}.onnx", _model_file(bundle, variant, provider)
    # The process's first session pays ONNX Runtime's own start-up (and the GPU's); off the CPU it is the check.
    placement = check_placement(path, provider, threads) if provider != "cpu" else {}
    if provider == "cpu":
        make_session(raw, provider, threads)
    started = time.perf_counter()
    make_session(raw, provider, threads)
    load_raw_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    session = make_session(path, provider, threads)
    load_ms = (time.perf_counter() - started) * 1000
    name, output = session.get_inputs()[0].name, session.get_outputs()[0].name
    info = {
        "execution_provider": session.get_providers()[0],
        "size_bytes": raw.stat().st_size,
        "session_load_ms": round(load_ms, 2),
        "session_load_raw_ms": round(load_raw_ms, 2),
        "optimized_file": path != raw,
        "io_binding": binding != "host",
        "cuda_graph": binding == "cuda_graph",
        **placement,
    }

    def host(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    if binding == "host":
        return host, host, info
    import onnxruntime as ort

    device = "cpu" if provider == "cpu" else "cuda"
    bound: dict[int, tuple] = {}  # per input array (kept alive, so its id is never reused): its binding

    def run_bound(x: np.ndarray):
        entry = bound.get(id(x))
        if entry is None:
            own = make_session(path, provider, threads, cuda_graph=True) if binding == "cuda_graph" else session
            x_on_device = ort.OrtValue.ortvalue_from_numpy(x, device, 0)
            sample = host(x[:1])  # the output's shape past the batch and its dtype
            y_on_device = ort.OrtValue.ortvalue_from_shape_and_type(
                [len(x), *sample.shape[1:]], sample.dtype, device, 0
            )
            io = own.io_binding()
            io.bind_ortvalue_input(name, x_on_device)
            io.bind_ortvalue_output(output, y_on_device)  # fixed buffer on the device: no host copy is timed
            entry = bound[id(x)] = (x, own, io, x_on_device, y_on_device)
        entry[1].run_with_iobinding(entry[2])  # returns once the device has finished (ORT synchronises the run)
        return entry[2]

    return run_bound, (lambda x: run_bound(x).copy_outputs_to_cpu()[0]), info


def _native_predictor(bundle: Path, model: str, variant: str, provider: str, threads: int):
    from mlops_onnx.models import load_spec
    from mlops_onnx.settings import get_settings

    os.environ["MLOPS_BENCH_THREADS"] = str(threads)
    get_settings.cache_clear()
    meta = json.loads((bundle / "meta.json").read_text())
    device = "cuda" if provider == "cuda" else "cpu"
    spec = load_spec(model)
    if device == "cuda" and "torch" in sys.modules:  # fp32 math, as in ONNX Runtime's CUDA sessions (no TF32)
        torch = sys.modules["torch"]
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    started = time.perf_counter()
    predictors = spec.native_predictors(bundle / meta["checkpoint"], get_settings(), device, compiled=True)
    load_ms = (time.perf_counter() - started) * 1000
    if variant not in predictors:
        why = " (tensorflow-cpu: the Keras models reach the GPU through ONNX Runtime only)" if device != "cpu" else ""
        raise LookupError(f"{model} has no {variant} on {device}{why}")
    predict = predictors[variant]  # on CUDA it returns a host array: the copy back waits for the GPU (synchronised)
    return (
        predict,
        predict,
        {
            "execution_provider": f"{'torch' if model == 'fashion_mnist_cnn' else 'keras'}:{device}",
            "size_bytes": meta["checkpoint_bytes"],
            "session_load_ms": round(load_ms, 2),
        },
    )


def measure(
    bundle: Path,
    variant: str,
    provider: str,
    batches: tuple[int, ...],
    threads: int,
    warmup: int,
    runs: int,
    max_seconds: float,
    binding: str = "host",
) -> list[dict]:
    """The rows of one (model, variant, provider): parity on the sample, then each batch size."""
    meta = json.loads((bundle / "meta.json").read_text())
    model, kind = meta["model"], meta["output_kind"]
    inputs, targets = np.load(bundle / "inputs.npy"), np.load(bundle / "targets.npy")
    reference = np.load(bundle / "reference.npy")
    baseline = rss_mb("VmRSS")
    if variant.startswith("onnx_"):
        predict, fetch, info = _onnx_predictor(bundle, variant.removeprefix("onnx_"), provider, threads, binding)
    else:
        predict, fetch, info = _native_predictor(bundle, model, variant, provider, threads)
    outputs = np.asarray(fetch(inputs), dtype=np.float32).reshape(reference.shape)
    rules = ParityRules(**meta["parity_rules"])
    name = "fp32" if variant in ("onnx_fp32", "native_compiled") else variant
    parity = compare(
        name,
        reference,
        outputs,
        labels(kind, reference),
        labels(kind, outputs),
        meta["native_quality"],
        quality(kind, outputs, targets),
        rules,
    )
    rows = []
    for batch in batches:
        x = batch_of(inputs, batch)
        latencies = time_calls(lambda x=x: predict(x), warmup, runs, max_seconds)
        p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
        rows.append(
            {
                "model": model,
                "variant": variant,
                "provider": provider,
                "batch": batch,
                "p50_ms": round(float(p50), 4),
                "p95_ms": round(float(p95), 4),
                "p99_ms": round(float(p99), 4),
                "mean_ms": round(float(latencies.mean()), 4),
                "throughput_per_s": round(batch * 1000.0 / float(latencies.mean()), 1),
                "runs": len(latencies),
                "warmup": warmup,
                "threads": threads,
                "size_bytes": info["size_bytes"],
                "peak_rss_mb": rss_mb(),
                "rss_before_load_mb": baseline,
                "parity_ok": parity.passed,
                "parity_max_abs_diff": parity.max_abs_diff,
                "parity_agreement": parity.agreement,
                "parity_quality_drop": round(parity.quality_drop, 6),
                "parity_reasons": parity.reasons,
                **info,
            }
        )
    if provider == "cuda":
        try:
            import torch

            if torch.cuda.is_available() and variant.startswith("native"):
                for row in rows:
                    row["gpu_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        except ImportError:
            pass
    return rows


def profile_onnx(bundle: Path, variant: str, provider: str, threads: int, runs: int = 200) -> dict:
    """ONNX Runtime's profiler on batch 1: time per operator type and the share outside operators (on a
    GPU provider an operator's time is the host's side of it: the kernel launches, not the GPU's work)."""
    import tempfile

    from mlops_onnx.runtime import end_profile, make_session

    with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
        session = make_session(
            _model_file(bundle, variant, provider),
            provider,
            threads,
            profile_prefix=str(Path(tmp) / f"{variant}_{provider}"),
        )
        feed = {session.get_inputs()[0].name: np.load(bundle / "inputs.npy")[:1]}
        for _ in range(runs):
            session.run(None, feed)
        trace = end_profile(session)
    by_op: dict[str, float] = {}
    model_run_us = 0.0
    for event in trace:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + event["dur"]
        elif event.get("cat") == "Session" and event.get("name") == "model_run":
            model_run_us += event["dur"]
    kernels = sum(by_op.values())
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:8]
    return {
        "variant": variant,
        "provider": provider,
        "runs": runs,
        "model_run_us_per_call": round(model_run_us / runs, 2),
        "kernel_us_per_call": round(kernels / runs, 2),
        "outside_kernels_share": round(1 - kernels / model_run_us, 3) if model_run_us else None,
        "top_ops": [{"op": op, "us_per_call": round(us / runs, 2), "share": round(us / kernels, 3)} for op, us in top],
    }


def worker_main(args: argparse.Namespace) -> int:
    batches = tuple(int(b) for b in args.batches.split(","))
    try:
        if args.profile:
            result = {
                "profile": profile_onnx(args.bundle, args.variant.removeprefix("onnx_"), args.provider, args.threads)
            }
        else:
            result = {
                "rows": measure(
                    args.bundle,
                    args.variant,
                    args.provider,
                    batches,
                    args.threads,
                    args.warmup,
                    args.runs,
                    args.max_seconds,
                    args.binding,
                )
            }
            if args.provider != "cpu":
                result["gpu_stack"] = gpu_stack()
    except Exception as exc:  # reported as an empty cell with its reason, never a number
        result = {"error": f"{type(exc).__name__}: {exc}"[:600]}
    print("BENCH-RESULT " + json.dumps(result), flush=True)
    return 0


# ------------------------------------------------------------------------------------------------- run
def machine(threads: int, providers: list[str]) -> dict:
    """The benchmark's machine description, plus the host, the GPU and the providers ONNX Runtime offers."""
    info = machine_info(threads) | {"hostname": platform.node(), "gpu": None}
    if set(providers) - {"cpu"}:
        try:
            query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,compute_cap", "--format=csv,noheader"]
            out = subprocess.run(query, capture_output=True, text=True, timeout=30)
            info["gpu"] = out.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import onnxruntime as ort

        info["onnxruntime_available_providers"] = ort.get_available_providers()
    except ImportError:
        pass
    return info


def _worker(
    bundle: Path, variant: str, provider: str, cfg: argparse.Namespace, binding: str = "host", profile: bool = False
) -> dict:
    command = [
        sys.executable,
        "-m",
        "mlops_onnx.bench",
        "worker",
        "--bundle",
        str(bundle),
        "--variant",
        variant,
        "--provider",
        provider,
        "--batches",
        cfg.batches,
        "--threads",
        str(cfg.threads),
        "--warmup",
        str(cfg.warmup),
        "--runs",
        str(cfg.runs),
        "--max-seconds",
        str(cfg.max_seconds),
        "--binding",
        binding,
    ]
    command += ["--profile"] * profile
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS=str(cfg.threads), PYTHONUNBUFFERED="1")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=cfg.cell_timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {cfg.cell_timeout}s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            return json.loads(line.removeprefix("BENCH-RESULT "))
    return {"error": f"worker exited {done.returncode}: {done.stderr.strip()[-600:]}"}


def cells(meta: dict, provider: str) -> list[tuple[str, str]]:
    """The (variant, binding) cells of one model on one provider: the native paths on the CPU and (PyTorch)
    on CUDA; each ONNX variant with host copies on the CPU, and on CUDA also with I/O binding and as a CUDA
    graph; on TensorRT with I/O binding (its engine takes the inputs on the GPU)."""
    natives = meta.get("native_variants", NATIVE_VARIANTS) if provider in ("cpu", "cuda") else []
    bindings = {"cpu": ("host",), "cuda": BINDINGS, "tensorrt": ("io_binding",)}[provider]
    onnx = [f"onnx_{v}" for v in ONNX_VARIANTS if v in meta["onnx_variants"]]
    return [(v, "host") for v in natives] + [(v, b) for v in onnx for b in bindings]


def provider_did_not_load(error: str) -> bool:
    """A worker's error that every ONNX cell of that provider would repeat (not one graph's CPU fallback)."""
    from mlops_onnx.runtime import ProviderUnavailable

    return error.startswith(f"{ProviderUnavailable.__name__}:")


def run(bundle_dir: Path, providers: list[str], cfg: argparse.Namespace) -> dict:
    """Every cell, each in its own interpreter; rows plus a note for every cell left empty. With an
    `out_dir`, what is measured so far is also kept in `benchmark.partial.json` after each cell, so a run
    cut short (a time limit, a machine taken back) still has its rows for `report --from`."""
    rows: list[dict] = []
    notes: list[dict] = []
    profiles: dict[str, dict] = {}
    models: dict[str, dict] = {}
    gpu_stacks: dict[str, dict] = {}
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(cfg.threads, providers) | {"gpu_stack": gpu_stacks},
        "providers_requested": providers,
        "settings": {
            "batches": cfg.batches,
            "threads": cfg.threads,
            "warmup": cfg.warmup,
            "runs": cfg.runs,
            "max_seconds_per_cell": cfg.max_seconds,
        },
        "models": models,
        "rows": rows,
        "notes": notes,
        "profiles": profiles,
    }
    partial = cfg.out_dir / "benchmark.partial.json" if getattr(cfg, "out_dir", None) else None
    if partial:
        partial.parent.mkdir(parents=True, exist_ok=True)
    not_loaded: dict[str, str] = {}  # provider -> why it did not load: its later ONNX cells are not started
    for bundle in sorted(p for p in bundle_dir.iterdir() if (p / "meta.json").is_file()):
        meta = json.loads((bundle / "meta.json").read_text())
        model = meta["model"]
        models[model] = {
            k: meta[k]
            for k in (
                "registered_version",
                "mlflow_run_id",
                "airflow_run_id",
                "data_hash",
                "serving_variant",
                "pipeline_parity",
                "native_quality",
            )
        }
        for provider in providers:
            selected = [(v, b) for v, b in cells(meta, provider) if not cfg.variants or v in cfg.variants.split(",")]
            for variant, binding in selected:
                label = f"{model} {variant} {provider}" + ("" if binding == "host" else f" {binding}")
                started = time.perf_counter()
                if variant.startswith("onnx_") and provider in not_loaded:
                    result = {"error": f"{not_loaded[provider]} (its first ONNX cell; not started again)"}
                else:
                    result = _worker(bundle, variant, provider, cfg, binding)
                if provider_did_not_load(result.get("error", "")):
                    not_loaded.setdefault(provider, result["error"])
                if "error" in result:
                    notes.append(
                        {
                            "model": model,
                            "variant": variant,
                            "provider": provider,
                            "binding": binding,
                            "reason": result["error"],
                        }
                    )
                    print(f"[bench] {label}: empty ({result['error'][:160]})", flush=True)
                else:
                    rows += result["rows"]
                    for key, value in result.get("gpu_stack", {}).items():  # ONNX Runtime's cells and PyTorch's
                        gpu_stacks.setdefault(provider, {}).setdefault(key, value)
                    b1 = result["rows"][0]
                    print(
                        f"[bench] {label}: b{b1['batch']} p50 {b1['p50_ms']:.3f} ms, "
                        f"parity {'ok' if b1['parity_ok'] else 'FAIL'}, {time.perf_counter() - started:.0f}s",
                        flush=True,
                    )
                if partial:
                    partial.write_text(json.dumps(report))
            if provider in ("cpu", "cuda") and provider not in not_loaded:
                profile = _worker(bundle, "onnx_fp32", provider, cfg, profile=True)
                profiles[f"{model}:{provider}"] = profile.get("profile", {"error": profile.get("error")})
    if partial:
        partial.unlink(missing_ok=True)
    return report


# ---------------------------------------------------------------------------------------------- report
def binding_of(row: dict) -> str:
    """How a row's (or a note's) session was fed: one of BINDINGS."""
    if row.get("cuda_graph"):
        return "cuda_graph"
    return "io_binding" if row.get("io_binding") else row.get("binding", "host")


def cell_label(row: dict) -> str:
    """A row's or note's provider and how it was fed: "cuda (I/O binding, CUDA graph)"."""
    return (
        row["provider"]
        + {"host": "", "io_binding": " (I/O binding)", "cuda_graph": " (I/O binding, CUDA graph)"}[binding_of(row)]
    )


def _short_label(row: dict, sep: str = " ") -> str:
    """ "cuda", "cuda iob", "cuda graph": for chart labels and MLflow metric names."""
    return row["provider"] + {"host": "", "io_binding": f"{sep}iob", "cuda_graph": f"{sep}graph"}[binding_of(row)]


def _row(
    rows: list[dict], model: str, variant: str, provider: str = "cpu", batch: int = 1, binding: str = "host"
) -> dict | None:
    for row in rows:
        if (row["model"], row["variant"], row["provider"], row["batch"]) == (
            model,
            variant,
            provider,
            batch,
        ) and binding_of(row) == binding:
            return row
    return None


def targets(report: dict) -> list[dict]:
    """Issue 9's targets, each with the measured ratio, met or by how much it is missed."""
    rows, results = report["rows"], []
    for model, needed in SPEEDUP_TARGETS.items():
        onnx = _row(rows, model, "onnx_fp32")
        natives = [r for v in NATIVE_VARIANTS if (r := _row(rows, model, v))]
        if onnx is None or not natives:
            results.append(
                {
                    "model": model,
                    "target": f"ONNX fp32 ≥ {needed:g}× native at batch 1",
                    "met": None,
                    "detail": "not measured (see notes)",
                }
            )
            continue
        reference = natives[0] if model == "fashion_mnist_cnn" else min(natives, key=lambda r: r["p50_ms"])
        ratio = reference["p50_ms"] / onnx["p50_ms"]
        results.append(
            {
                "model": model,
                "target": f"ONNX fp32 ≥ {needed:g}× {reference['variant']} at batch 1 (CPU p50)",
                "ratio": round(ratio, 2),
                "met": ratio >= needed,
                "detail": f"{reference['variant']} {reference['p50_ms']:.3f} ms / onnx_fp32 {onnx['p50_ms']:.3f} ms"
                + ("" if ratio >= needed else f"; missed by {needed / ratio:.2f}×"),
            }
        )
    for model, info in report["models"].items():
        serving = info.get("serving_variant")
        fp32, chosen = _row(rows, model, "onnx_fp32"), _row(rows, model, f"onnx_{serving}") if serving else None
        if fp32 is None or chosen is None:
            results.append(
                {
                    "model": model,
                    "target": "serving variant not slower than fp32",
                    "met": None,
                    "detail": f"serving variant {serving!r} not measured",
                }
            )
            continue
        slower = chosen["p50_ms"] / fp32["p50_ms"]
        results.append(
            {
                "model": model,
                "target": f"serving variant ({serving}) not slower than fp32 at batch 1 (CPU p50)",
                "ratio": round(fp32["p50_ms"] / chosen["p50_ms"], 2),
                "met": chosen["p50_ms"] <= fp32["p50_ms"] * 1.02,
                "detail": f"{serving} {chosen['p50_ms']:.3f} ms vs fp32 {fp32['p50_ms']:.3f} ms"
                + ("" if slower <= 1.02 else f"; {slower:.2f}× slower"),
            }
        )
    return results


def _fmt_ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def gpu_description(machine: dict) -> str | None:
    """The GPU and the stack the GPU cells ran on, from nvidia-smi and the libraries the workers loaded."""
    if not machine.get("gpu"):
        return None
    name, memory, driver, *capability = [part.strip() for part in machine["gpu"].splitlines()[0].split(",")]
    text = f"{name} ({memory}, compute capability {capability[0] if capability else '?'}), driver {driver}"
    stacks = machine.get("gpu_stack") or {}
    stack = stacks.get("cuda") or next(iter(stacks.values()), {})
    parts = [
        f"{label} {stack[key]}"
        for key, label in (
            ("cudart", "CUDA runtime"),
            ("cuda", "CUDA driver API"),
            ("cudnn", "cuDNN"),
            ("cublasLt", "cuBLASLt"),
        )
        if stack.get(key)
    ]
    if stack.get("onnxruntime"):
        parts.append(f"ONNX Runtime {stack['onnxruntime']} (built for CUDA {stack.get('onnxruntime_built_for_cuda')})")
    if stack.get("torch_cuda"):
        parts.append(
            f"PyTorch built for CUDA {stack['torch_cuda']}"
            + (f" with cuDNN {stack['torch_cudnn']}" if stack.get("torch_cudnn") else "")
        )
    trt = next((st["nvinfer"] for st in stacks.values() if st.get("nvinfer")), None)
    parts.append(f"TensorRT {trt}" if trt else "TensorRT not loaded")
    return text + "; " + ", ".join(parts)


def markdown(report: dict) -> str:
    m = report["machine"]
    s = report["settings"]
    gpu = gpu_description(m)
    lines = [
        f"# Benchmark ({report['generated_at']})",
        "",
        f"Machine: {m['cpu_model']}, {m['cpu_cores']} cores, {s['threads']} thread(s) per framework"
        + (f"; GPU {gpu}" if gpu else "; no GPU")
        + f"; Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + ".",
        f"Each cell: {s['warmup']} warm-up calls, then {s['runs']} timed calls (at least 10, fewer only when "
        f"a cell passes {s['max_seconds_per_cell']} s), in a fresh interpreter per cell (model, variant, provider, "
        "binding). "
        "Peak RSS is the process's high-water mark after that batch (interpreter and libraries included).",
        "",
        "Providers: `cpu` and `cuda` take numpy arrays and return them (the copies to and from the GPU are timed; "
        "PyTorch on CUDA likewise, timed until its output is back on the host, so every GPU timing waits for the "
        "GPU); `(I/O binding)`: the input is already on the GPU and the output stays there; `(I/O binding, CUDA "
        "graph)`: the same, the run replayed as one CUDA graph. A GPU cell is left empty, with the reason, when "
        "the session's first provider is not the one asked for or any node other than shape arithmetic ran on "
        "the CPU.",
        "",
        "## Targets",
        "",
        "| model | target | ratio | met | detail |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in report["targets"]:
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        lines.append(f"| {t['model']} | {t['target']} | {t.get('ratio', '–')} | {met} | {t['detail']} |")
    for model in report["models"]:
        info = report["models"][model]
        lines += [
            "",
            f"## {model}",
            "",
            f"Registered version {info['registered_version'] or '–'} (MLflow run `{info['mlflow_run_id']}`, "
            f"data `{str(info['data_hash'])[:12]}`), serving variant `{info['serving_variant']}`.",
            "",
            "| variant | provider | batch | p50 ms | p95 ms | p99 ms | items/s | size | peak RSS MB | parity |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in (r for r in report["rows"] if r["model"] == model):
            provider = cell_label(r)
            parity = "ok" if r["parity_ok"] else "FAIL: " + "; ".join(r["parity_reasons"])
            diff = r["parity_max_abs_diff"]
            parity += f" ({diff:.1e})" if diff not in (None, float("inf")) and r["variant"] != "native_eager" else ""
            lines.append(
                f"| {r['variant']} | {provider} | {r['batch']} | {_fmt_ms(r['p50_ms'])} | "
                f"{_fmt_ms(r['p95_ms'])} | {_fmt_ms(r['p99_ms'])} | {r['throughput_per_s']:,.0f} | "
                f"{r['size_bytes'] / 1e6:.2f} MB | {r['peak_rss_mb']} | {parity} |"
            )
        for key, profile in report["profiles"].items():
            if key.startswith(model + ":") and "top_ops" in profile:
                ops = ", ".join(f"{o['op']} {o['share']:.0%}" for o in profile["top_ops"][:5])
                share = profile["outside_kernels_share"]
                seen = "" if profile["provider"] == "cpu" else " (operator times as the host sees them)"
                lines += [
                    "",
                    f"ONNX Runtime profile, fp32 batch 1 on {profile['provider']}{seen}: "
                    f"{profile['model_run_us_per_call']} µs per run, "
                    f"{share:.0%} outside operator kernels; by operator: {ops}.",
                ]
    if report["notes"]:
        lines += ["", "## Empty cells", "", "| model | variant | provider | why |", "| --- | --- | --- | --- |"]
        for n in report["notes"]:
            provider = cell_label(n)
            lines.append(f"| {n['model']} | {n['variant']} | {provider} | {n['reason'].replace('|', '/')[:300]} |")
    return "\n".join(lines) + "\n"


README_COLUMNS = (
    ("cpu", "host", "CPU"),
    ("cuda", "host", "CUDA"),
    ("cuda", "io_binding", "CUDA I/O binding"),
    ("cuda", "cuda_graph", "CUDA graph"),
    ("tensorrt", "io_binding", "TensorRT"),
)


def readme_table(report: dict) -> str:
    """The README's performance table: p50 at batch 1 and 256 of each model's variants, on each provider
    (and way of feeding it) that has rows; '–' where a cell is empty (the full report says why)."""
    m, rows = report["machine"], report["rows"]
    batches = [b for b in (1, 256) if any(r["batch"] == b for r in rows)]
    columns = [c for c in README_COLUMNS if any((r["provider"], binding_of(r)) == c[:2] for r in rows)]
    gpu = gpu_description(m)
    lines = [
        f"Generated by `python -m mlops_onnx.bench` (`make bench`) from the run of {report['generated_at'][:10]}: "
        f"CPU {m['cpu_model']}, {m['cpu_cores']} "
        f"cores, {report['settings']['threads']} thread"
        + (f"; GPU {gpu}" if gpu else "")
        + "; full report: `reports/benchmark.md`. p50 latency in ms.",
        "",
        "| model | variant | " + " | ".join(f"{title} b={b}" for b in batches for *_, title in columns) + " | parity |",
        "| --- | --- | " + "--- | " * (len(batches) * len(columns)) + "--- |",
    ]
    for model in report["models"]:
        for variant in dict.fromkeys(r["variant"] for r in rows if r["model"] == model):
            cells = [
                _row(rows, model, variant, provider, b, binding) for b in batches for provider, binding, _ in columns
            ]
            mine = [r for r in rows if r["model"] == model and r["variant"] == variant]
            failed = dict.fromkeys(cell_label(r) for r in mine if not r["parity_ok"])
            parity = "ok" if not failed else "FAIL: " + ", ".join(failed)
            lines.append(
                f"| {model} | {variant} | " + " | ".join(_fmt_ms(c and c["p50_ms"]) for c in cells) + f" | {parity} |"
            )
    lines += ["", "| target | ratio | met |", "| --- | --- | --- |"]
    for t in report["targets"]:
        lines.append(
            f"| {t['model']}: {t['target']} | {t.get('ratio', '–')} | "
            f"{ {True: 'yes', False: 'no — ' + t['detail'], None: '–'}[t['met']] } |"
        )
    return "\n".join(lines)


def charts(report: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    models = list(report["models"])
    if not models:
        return paths
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        rows = [r for r in report["rows"] if r["model"] == model and r["batch"] == 1]
        names = [f"{r['variant'].replace('native_', 'n:').replace('onnx_', '')}\n{_short_label(r)}" for r in rows]
        ax.bar(
            names,
            [r["p50_ms"] for r in rows],
            color=["#999" if r["variant"].startswith("native") else "#2a7" for r in rows],
        )
        ax.set_yscale("log")
        ax.set_title(f"{model}: p50 latency, batch 1")
        ax.set_ylabel("ms (log)")
        ax.tick_params(axis="x", labelsize=7, rotation=60)
    fig.tight_layout()
    paths.append(out_dir / "benchmark_latency_b1.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        series: dict[str, list[tuple[int, float]]] = {}
        for r in report["rows"]:
            if r["model"] == model:
                key = f"{r['variant']} ({_short_label(r)})"
                series.setdefault(key, []).append((r["batch"], r["throughput_per_s"]))
        for key, points in series.items():
            ax.plot(*zip(*sorted(points), strict=True), marker="o", label=key)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{model}: throughput")
        ax.set_xlabel("batch")
        ax.set_ylabel("items/s (log)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    paths.append(out_dir / "benchmark_throughput.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def update_readme(table: str, readme: Path = REPO_ROOT / "README.md") -> bool:
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    readme.write_text(head + README_START + "\n" + table + "\n" + README_END + rest.split(README_END, 1)[1])
    return True


def log_to_mlflow(report: dict, files: list[Path]) -> str | None:
    import mlflow

    from mlops_onnx import tracking
    from mlops_onnx.settings import get_settings

    tracking.configure(get_settings())
    mlflow.set_experiment("benchmarks")
    metrics = {}
    for r in report["rows"]:
        key = f"{r['model']}.{r['variant']}.{_short_label(r, '.')}.b{r['batch']}"
        metrics |= {
            f"{key}.p50_ms": r["p50_ms"],
            f"{key}.p99_ms": r["p99_ms"],
            f"{key}.throughput_per_s": r["throughput_per_s"],
            f"{key}.peak_rss_mb": r["peak_rss_mb"] or 0.0,
        }
    for t in report["targets"]:
        if t.get("ratio") is not None:
            metrics[f"target.{t['model']}.{'speedup' if 'native' in t['target'] else 'serving_vs_fp32'}"] = t["ratio"]
    tags = {f"version.{m}": str(i["registered_version"]) for m, i in report["models"].items()}
    tags |= {"cpu_model": report["machine"]["cpu_model"][:250], "gpu": str(report["machine"].get("gpu"))[:250]}
    with mlflow.start_run(run_name=f"bench-{report['generated_at']}", tags=tags) as run:
        mlflow.log_params(report["settings"])
        mlflow.log_metrics(metrics)
        for path in files:
            mlflow.log_artifact(str(path))
    return run.info.run_id


def report_main(report: dict, out_dir: Path, readme: bool, mlflow_log: bool) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    report["targets"] = targets(report)
    json_path = out_dir / "benchmark.json"
    json_path.write_text(json.dumps(report, indent=2))
    md_path = out_dir / "benchmark.md"
    md_path.write_text(markdown(report))
    files = [json_path, md_path, *charts(report, out_dir)]
    if readme and update_readme(readme_table(report)):
        print("[bench] README performance table updated", flush=True)
    if mlflow_log:
        run_id = log_to_mlflow(report, files)
        print(f"[bench] logged to MLflow experiment 'benchmarks', run {run_id}", flush=True)
    for t in report["targets"]:
        print(
            f"[bench] target {t['model']}: {t['target']}: {t.get('ratio', '–')} "
            f"{ {True: 'met', False: 'MISSED', None: 'not measured'}[t['met']] } ({t['detail']})",
            flush=True,
        )
    print(f"[bench] wrote {', '.join(str(p) for p in files)}", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_onnx.bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add_run_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--providers", default="cpu", help="comma-separated: cpu, cuda, tensorrt")
        p.add_argument("--batches", default=",".join(map(str, BATCHES)))
        p.add_argument("--threads", type=int, default=int(os.environ.get("MLOPS_BENCH_THREADS", "1")))
        p.add_argument("--warmup", type=int, default=int(os.environ.get("MLOPS_BENCH_WARMUP", "20")))
        p.add_argument("--runs", type=int, default=int(os.environ.get("MLOPS_BENCH_RUNS", "200")))
        p.add_argument("--max-seconds", type=float, default=float(os.environ.get("MLOPS_BENCH_MAX_SECONDS", "10")))
        p.add_argument("--cell-timeout", type=int, default=600)
        p.add_argument("--variants", default="", help="only these variants (e.g. native_eager,onnx_fp32)")

    bundle_default = Path(os.environ.get("MLOPS_BENCH_BUNDLE", "")) if os.environ.get("MLOPS_BENCH_BUNDLE") else None
    report = sub.add_parser("report", help="the report step alone, again, from a run's benchmark.json")
    report.add_argument("--from", dest="source", type=Path, default=REPORTS / "benchmark.json")
    report.add_argument("--out-dir", type=Path, default=REPORTS)
    report.add_argument("--no-readme", action="store_true")
    report.add_argument("--no-mlflow", action="store_true")
    for name in ("prepare", "run", "all"):
        p = sub.add_parser(name)
        p.add_argument("--bundle-dir", type=Path, default=bundle_default)
        p.add_argument("--models", default="fashion_mnist_cnn,fake_news_rnn,stock_lstm")
        p.add_argument("--out-dir", type=Path, default=REPORTS)
        p.add_argument("--no-readme", action="store_true")
        p.add_argument("--no-mlflow", action="store_true")
        add_run_args(p)
    worker = sub.add_parser("worker")
    worker.add_argument("--bundle", type=Path, required=True)
    worker.add_argument("--variant", required=True)
    worker.add_argument("--provider", default="cpu")
    worker.add_argument("--binding", choices=BINDINGS, default="host")
    worker.add_argument("--profile", action="store_true")
    add_run_args(worker)
    args = parser.parse_args(argv)
    if args.command == "worker":
        return worker_main(args)
    if args.command == "report":
        report_main(
            json.loads(args.source.read_text()), args.out_dir, readme=not args.no_readme, mlflow_log=not args.no_mlflow
        )
        return 0
    if args.bundle_dir is None:
        from mlops_onnx.settings import get_settings

        args.bundle_dir = get_settings().home / "bench" / "bundle"
    if args.command in ("prepare", "all"):
        prepared = prepare(args.bundle_dir, args.models.split(","))
        if not any("skipped" not in v for v in prepared.values()):
            print("[bench] nothing to benchmark: run `make demo` first", file=sys.stderr)
            return 1
    if args.command in ("run", "all"):
        report = run(args.bundle_dir, args.providers.split(","), args)
        report_main(report, args.out_dir, readme=not args.no_readme, mlflow_log=not args.no_mlflow)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: each model's registered version and the other candidates of its night, their native paths
and ONNX variants on every provider (and way of feeding it) and batch size, each cell in a fresh interpreter
so thread pools, allocators and CUDA contexts never mix. Parity of each cell against the native model is
judged here, by the model's spec (its `quality`, `labels`, `decision_margin` and parity rules), on the
outputs the cell sends back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mlops_onnx.benchmarks.bundle import META, BenchConfig, bundles, load_meta
from mlops_onnx.benchmarks.cells import BINDINGS
from mlops_onnx.benchmarks.report import subject_key
from mlops_onnx.benchmarks.timing import machine_info
from mlops_onnx.settings import Settings

ONNX_ORDER = ("fp32", "int8_static", "int8_dynamic", "fp16")  # the order rows are listed in


def prepare(settings: Settings, bundle_dir: Path, models: list[str]) -> dict[str, dict]:
    """One bundle per subject (`benchmarks.registered`: each model's registered version and the other candidates
    of its night); a subject that cannot be measured gets a meta that says why. Returns {subject key: meta}."""
    import shutil

    from mlflow import MlflowClient

    from mlops_onnx import tracking
    from mlops_onnx.benchmarks.registered import subject_bundle, subjects_to_benchmark
    from mlops_onnx.models import load_spec

    tracking.configure(settings)
    client = MlflowClient()
    shutil.rmtree(bundle_dir, ignore_errors=True)
    prepared = {}
    for subject in subjects_to_benchmark(client, models):
        key = subject.key
        folder = bundle_dir / key.replace("/", ".")
        reason = subject.reason
        if not reason:
            try:
                prepared[key] = meta = subject_bundle(settings, client, subject, folder)
                print(f"[bench] {subject.label}: variants {', '.join(meta['onnx_variants'])}", flush=True)
                continue
            except (LookupError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
        spec = load_spec(subject.model, subject.architecture)
        folder.mkdir(parents=True, exist_ok=True)
        prepared[key] = meta = {
            "model": subject.model,
            "architecture": subject.architecture,
            **subject.about(),
            "skipped": reason,
            "speedup_target": spec.speedup_target,
            "speedup_baseline": spec.speedup_baseline,
        }
        (folder / META).write_text(json.dumps(meta, indent=2))
        print(f"[bench] {subject.label}: skipped ({reason})", flush=True)
    return prepared


def cells(meta: dict, provider: str) -> list[tuple[str, str]]:
    """The (variant, binding) cells of one model on one provider: the native paths on the CPU and on CUDA;
    each ONNX variant with host copies on the CPU, and on CUDA also with I/O binding and as a CUDA graph;
    on TensorRT with I/O binding (its engine takes the inputs on the GPU)."""
    natives = meta["native_variants"] if provider in ("cpu", "cuda") else []
    bindings = {"cpu": ("host",), "cuda": BINDINGS, "tensorrt": ("io_binding",)}[provider]
    order = {name: i for i, name in enumerate(ONNX_ORDER)}
    onnx = [f"onnx_{v}" for v in sorted(meta["onnx_variants"], key=lambda v: order.get(v, len(order)))]
    return [(v, "host") for v in natives] + [(v, b) for v in onnx for b in bindings]


def provider_did_not_load(error: str) -> bool:
    """A worker's error that every ONNX cell of that provider would repeat (not one graph's CPU fallback)."""
    from mlops_onnx.runtime import ProviderUnavailable

    return error.startswith(f"{ProviderUnavailable.__name__}:")


def run_worker(
    bundle: Path,
    variant: str,
    provider: str,
    cfg: BenchConfig,
    binding: str = "host",
    profile: bool = False,
    outputs: Path | None = None,
) -> dict:
    """One cell in a fresh interpreter (`python -m mlops_onnx.benchmarks worker`): its rows (its outputs
    on the sample in `outputs`), or its profile, or {"error": why}."""
    command = [sys.executable, "-m", "mlops_onnx.benchmarks", "worker", "--bundle", str(bundle)]
    command += ["--variant", variant, "--provider", provider, "--binding", binding, *cfg.as_args()]
    command += ["--profile"] if profile else ["--outputs", str(outputs)] if outputs else []
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS=str(cfg.threads), PYTHONUNBUFFERED="1")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=cfg.cell_timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {cfg.cell_timeout:g}s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            return json.loads(line.removeprefix("BENCH-RESULT "))
    return {"error": f"worker exited {done.returncode}: {done.stderr.strip()[-600:]}"}


def parity_fields(spec, bundle: Path, variant: str, outputs: np.ndarray) -> dict:
    """A cell's parity against the native model on the bundle's sample, by the spec's own rules."""
    from mlops_onnx.parity import compare

    reference, targets = np.load(bundle / "reference.npy"), np.load(bundle / "targets.npy")
    outputs = outputs.reshape(reference.shape)
    name = "fp32" if variant in ("onnx_fp32", "native_compiled") else variant  # fp32 math: the fp32 rules
    result = compare(
        name,
        reference,
        outputs,
        spec.labels(reference),
        spec.labels(outputs),
        spec.quality(reference, targets),
        spec.quality(outputs, targets),
        spec.parity_rules,
        spec.decision_margin(reference),
    )
    return {
        "parity_ok": result.passed,
        "parity_max_abs_diff": result.max_abs_diff,
        "parity_agreement": result.agreement,
        "parity_quality_drop": round(result.quality_drop, 6),
        "parity_reasons": result.reasons,
    }


MODEL_FIELDS = (
    "model",
    "architecture",
    "registered_version",
    "candidate_status",
    "night_run_id",
    "alias",
    "mlflow_run_id",
    "airflow_run_id",
    "data_hash",
    "serving_variant",
    "pipeline_parity",
    "speedup_target",
    "speedup_baseline",
    "skipped",
)
ROW_FIELDS = ("architecture", "registered_version", "alias")


def run(
    bundle_dir: Path,
    providers: list[str],
    cfg: BenchConfig,
    variants: tuple[str, ...] = (),
    out_dir: Path | None = None,
) -> dict:
    """Every cell, each in its own interpreter; rows plus a note for every cell left empty. With an
    `out_dir`, what is measured so far is also kept in `benchmark.partial.json` after each cell, so a run
    cut short (a time limit, a machine taken back) still has its rows for `report --from`."""
    from mlops_onnx.models import load_spec

    rows: list[dict] = []
    notes: list[dict] = []
    profiles: dict[str, dict] = {}
    models: dict[str, dict] = {}
    gpu_stacks: dict[str, dict] = {}
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(cfg.threads, providers) | {"gpu_stack": gpu_stacks},
        "providers_requested": providers,
        "settings": cfg.to_dict() | {"max_seconds_per_cell": cfg.max_seconds},
        "models": models,
        "rows": rows,
        "notes": notes,
        "profiles": profiles,
    }
    partial = out_dir / "benchmark.partial.json" if out_dir else None
    if partial:
        partial.parent.mkdir(parents=True, exist_ok=True)
    not_loaded: dict[str, str] = {}  # provider -> why it did not load: its later ONNX cells are not started
    for bundle in bundles(bundle_dir):
        meta = load_meta(bundle)
        model, key = meta["model"], subject_key(meta)
        models[key] = {k: meta.get(k) for k in MODEL_FIELDS if k in meta}
        if "skipped" in meta:
            continue
        spec = load_spec(model, meta.get("architecture"))
        reference, targets = np.load(bundle / "reference.npy"), np.load(bundle / "targets.npy")
        models[key]["native_quality"] = spec.quality(reference, targets)
        # Every row and note says which architecture and which registered version (if any) it measured.
        subject = {k: meta.get(k) for k in ROW_FIELDS}
        for provider in providers:
            for variant, binding in cells(meta, provider):
                if variants and variant not in variants:
                    continue
                label = f"{key} {variant} {provider}" + ("" if binding == "host" else f" {binding}")
                started = time.perf_counter()
                with tempfile.TemporaryDirectory(prefix="bench-cell-") as tmp:
                    outputs = Path(tmp) / "outputs.npy"
                    if variant.startswith("onnx_") and provider in not_loaded:
                        result = {"error": f"{not_loaded[provider]} (its first ONNX cell; not started again)"}
                    else:
                        result = run_worker(bundle, variant, provider, cfg, binding, outputs=outputs)
                    if "rows" in result:
                        fields = parity_fields(spec, bundle, variant, np.load(outputs))
                        result["rows"] = [row | subject | fields for row in result["rows"]]
                if provider_did_not_load(result.get("error", "")):
                    not_loaded.setdefault(provider, result["error"])
                if "error" in result:
                    notes.append(
                        {"model": model, **subject, "variant": variant, "provider": provider, "binding": binding}
                        | {"reason": result["error"]}
                    )
                    print(f"[bench] {label}: empty ({result['error'][:160]})", flush=True)
                else:
                    rows += result["rows"]
                    for key, value in result.get("gpu_stack", {}).items():  # ONNX Runtime's cells and PyTorch's
                        gpu_stacks.setdefault(provider, {}).setdefault(key, value)
                    first = result["rows"][0]
                    print(
                        f"[bench] {label}: b{first['batch']} p50 {first['p50_ms']:.3f} ms, "
                        f"parity {'ok' if first['parity_ok'] else 'FAIL'}, {time.perf_counter() - started:.0f}s",
                        flush=True,
                    )
                if partial:
                    partial.write_text(json.dumps(report))
            if provider in ("cpu", "cuda") and provider not in not_loaded and "fp32" in meta["onnx_variants"]:
                profile = run_worker(bundle, "onnx_fp32", provider, cfg, profile=True)
                profiles[f"{key}:{provider}"] = profile.get("profile", {"error": profile.get("error")})
    if partial:
        partial.unlink(missing_ok=True)
    return report

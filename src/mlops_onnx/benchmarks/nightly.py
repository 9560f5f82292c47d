"""The nightly benchmark: what the night decides with, measured in the task's own process.

Every ONNX variant that passed parity, and of the native paths (eager, `torch.compile` or the
`tf.function` trace, Keras `predict`) only the fastest: each is probed at batch 1 for a few calls,
and the fastest gets the full timing; the report says which, and what each probe measured. The GPU
task runs the same in a fresh interpreter (`python -m mlops_onnx.benchmarks nightly`), since CUDA
cannot start in the forked process Airflow runs a task in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from mlops_onnx.benchmarks.bundle import BenchConfig, load_meta
from mlops_onnx.benchmarks.cells import native_predictors, onnx_predictor, time_batches
from mlops_onnx.benchmarks.timing import batch_of, fastest_native, gpu_stack, machine_info
from mlops_onnx.monitoring import PeakMemory

GPU_PROVIDERS = ("cuda", "tensorrt")


def nightly_report(bundle: Path, providers: tuple[str, ...], cfg: BenchConfig) -> dict:
    """Rows of the fastest native path and of every ONNX variant on each provider; a provider or variant
    that cannot run there gets a note instead (a GPU number is never a CPU fallback's)."""
    from mlops_onnx.runtime import ProviderUnavailable

    meta = load_meta(bundle)
    model, inputs = meta["model"], np.load(bundle / "inputs.npy")
    rows: list[dict] = []
    notes: dict[str, str] = {}
    choice: dict[str, dict] = {}
    with PeakMemory() as memory:
        for provider in providers:
            try:
                natives, info = native_predictors(bundle, provider, cfg)
                if natives:
                    chosen, probes = fastest_native(natives, batch_of(inputs, 1), cfg.probe_calls)
                    choice[provider] = {"chosen": chosen, "probe_calls": cfg.probe_calls, "probes": probes}
                    print(f"[{model}] {provider} native paths probed at batch 1: {_probes(probes)}; timing {chosen}")
                    rows += time_batches(natives[chosen], model, chosen, provider, inputs, cfg, info, memory)
                for variant in meta["onnx_variants"]:
                    try:  # off the CPU, onnx_predictor first checks that no computation falls back to the CPU
                        predict, _, info = onnx_predictor(bundle, variant, provider, cfg.threads)
                    except ProviderUnavailable as exc:
                        notes[f"{provider}:onnx_{variant}"] = str(exc)
                        continue
                    rows += time_batches(predict, model, f"onnx_{variant}", provider, inputs, cfg, info, memory)
            except Exception as exc:  # e.g. TensorRT cannot build an engine: report it, keep the other rows
                if provider == "cpu":
                    raise
                notes[provider] = f"{type(exc).__name__}: {exc}"[:500]
    report = {
        "model": model,
        "status": "ok" if rows else "skipped",
        "machine": machine_info(cfg.threads, providers),
        "providers": list(providers),
        "config": cfg.to_dict(),
        "native_choice": choice,
        "rows": rows,
        "notes": notes,
    }
    if not rows:
        report["reason"] = "GPU not used: " + ("; ".join(notes.values()) or "no provider ran on the GPU")
    if set(providers) - {"cpu"}:
        report["machine"]["gpu_stack"] = gpu_stack()
    return report


def _probes(probes: dict[str, dict[str, float]]) -> str:
    return ", ".join(f"{name} {p['p50_ms']:.3f} ms ({p['seconds']:.1f}s)" for name, p in probes.items())


def gpu_report(bundle: Path, cfg: BenchConfig, out: Path, timeout: float = 3600) -> dict:
    """`nightly_report` on the GPU providers in a fresh interpreter; a run that fails is reported, not raised."""
    command = [sys.executable, "-m", "mlops_onnx.benchmarks", "nightly", "--bundle", str(bundle), "--out", str(out)]
    command += ["--providers", ",".join(GPU_PROVIDERS), *cfg.as_args()]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not out.is_file():
        # The gate does not need GPU numbers: a broken GPU run is reported, not fatal to the night.
        return {"status": "failed", "reason": f"GPU benchmark failed ({proc.returncode}): {proc.stderr[-400:]}"}
    return json.loads(out.read_text())


def nightly_main(bundle: Path, providers: tuple[str, ...], cfg: BenchConfig, out: Path) -> int:
    """The `nightly` sub-command: the report of `bundle` on `providers`, written to `out`."""
    from mlops_onnx.runtime import ProviderUnavailable, make_session

    gpu = [p for p in providers if p != "cpu"]
    if gpu:  # a machine without the GPU provider: one line saying why, no rows
        try:
            make_session(bundle / "onnx" / "fp32.onnx", gpu[0], cfg.threads)
        except ProviderUnavailable as exc:
            out.write_text(json.dumps({"status": "skipped", "reason": f"GPU not used: {exc}"}, indent=2))
            print(json.dumps({"status": "skipped", "reason": str(exc)}))
            return 0
    report = nightly_report(bundle, providers, cfg)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({"status": report["status"], "reason": report.get("reason", "")}))
    return 0

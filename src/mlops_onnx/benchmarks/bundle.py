"""What a benchmark measures, in one folder (a *bundle*) per model architecture, and how it measures (`BenchConfig`).

A bundle holds a fixed sample of test inputs (and their targets), the native checkpoint, each ONNX
variant (with ONNX Runtime's optimised copy when the pipeline saved one) and `meta.json`; with a
reference, also the native model's outputs on the sample, for parity. The nightly tasks write one
from the DAG run's state (`bundle_from_state`), `make bench` from a registered version or another
candidate of its night (`benchmarks.registered`); everything after reads only the bundle, on any machine.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from mlops_onnx.benchmarks.timing import batch_of
from mlops_onnx.settings import Settings
from mlops_onnx.storage import size_bytes

SAMPLE_ROWS = 256  # test inputs in a bundle: the largest batch, and the parity sample
META = "meta.json"


@dataclass(frozen=True)
class BenchConfig:
    """How every cell is timed: batch sizes, threads, warm-up and timed calls, the time budget."""

    batches: tuple[int, ...]
    threads: int
    warmup: int
    runs: int
    max_seconds: float
    probe_calls: int = 5
    cell_timeout: float = 600.0

    @classmethod
    def nightly(cls, settings: Settings) -> BenchConfig:
        """The DAG's benchmark tasks: MLOPS_BENCH_NIGHTLY_BATCHES."""
        return cls._from(settings, settings.bench_nightly_batches)

    @classmethod
    def full(cls, settings: Settings) -> BenchConfig:
        """`make bench`: MLOPS_BENCH_BATCHES."""
        return cls._from(settings, settings.bench_batches)

    @classmethod
    def _from(cls, settings: Settings, batches: tuple[int, ...]) -> BenchConfig:
        return cls(
            batches=tuple(batches),
            threads=settings.bench_threads,
            warmup=settings.bench_warmup,
            runs=settings.bench_runs,
            max_seconds=settings.bench_max_seconds,
            probe_calls=settings.bench_probe_calls,
            cell_timeout=settings.bench_cell_timeout_seconds,
        )

    def with_overrides(self, **values) -> BenchConfig:
        """This config with the values that are not None (command-line flags that were given)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def as_args(self) -> list[str]:
        """The config as a worker's command-line flags."""
        return [
            *("--batches", ",".join(map(str, self.batches))),
            *("--threads", str(self.threads), "--warmup", str(self.warmup), "--runs", str(self.runs)),
            *("--max-seconds", str(self.max_seconds), "--probe-calls", str(self.probe_calls)),
        ]

    def to_dict(self) -> dict:
        return asdict(self) | {"batches": list(self.batches)}

    def settings(self, settings: Settings) -> Settings:
        """`settings` with this config's thread count: what native predictors are built with."""
        return replace(settings, bench_threads=self.threads)


def write_bundle(
    spec,
    folder: Path,
    settings: Settings,
    *,
    inputs: np.ndarray,
    targets: np.ndarray,
    checkpoint: Path,
    onnx_files: dict[str, Path],
    reference: bool,
    meta: dict | None = None,
) -> dict:
    """Fill `folder` with the bundle of `spec`'s model and return its meta. `onnx_files`: variant name
    (fp32, int8_static, ...) -> file; an `<file stem>.opt.onnx` beside a file is taken along. With
    `reference`, the native model (eager) runs once on the sample here, and parity is checked later."""
    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    sample, sample_targets = batch_of(inputs, SAMPLE_ROWS), batch_of(np.asarray(targets), SAMPLE_ROWS)
    np.save(folder / "inputs.npy", sample)
    np.save(folder / "targets.npy", sample_targets)
    _place(checkpoint, folder / checkpoint.name)
    for name, path in onnx_files.items():
        _place(Path(path), folder / "onnx" / f"{name}.onnx")
        optimized = Path(path).with_suffix(".opt.onnx")
        if optimized.is_file():
            _place(optimized, folder / "onnx" / f"{name}.opt.onnx")
    native_variants: list[str] = []
    if reference:
        natives = spec.native_predictors(checkpoint, settings, compiled=True)
        native_variants = list(natives)
        outputs = np.asarray(natives["native_eager"](sample), dtype=np.float32)
        np.save(folder / "reference.npy", outputs)
    info = {
        "model": spec.name,
        "architecture": spec.architecture,
        "framework": spec.framework,
        "checkpoint": checkpoint.name,
        "checkpoint_bytes": size_bytes(checkpoint),
        "onnx_variants": sorted(onnx_files),
        "native_variants": native_variants,
        "sample_rows": SAMPLE_ROWS,
        "speedup_target": spec.speedup_target,
        "speedup_baseline": spec.speedup_baseline,
        **(meta or {}),
    }
    (folder / META).write_text(json.dumps(info, indent=2))
    return info


def bundle_from_state(spec, state: dict, settings: Settings, folder: Path) -> dict:
    """The nightly bundle of a DAG run: tonight's test inputs, checkpoint, ONNX fp32 and the variants that
    passed parity. No reference: the `parity` task already compared them on the test split."""
    from mlops_onnx.stages import snapshot_store

    snapshot = snapshot_store(settings).get(spec.dataset.name, state["snapshot"])
    rows = spec.evaluation_data(snapshot, settings, Path(state["workdir"]))
    onnx_files = {"fp32": Path(state["onnx_fp32"])} | {
        name: Path(path) for name, path in state.get("passing_variants", {}).items()
    }
    return write_bundle(
        spec,
        folder,
        settings,
        inputs=rows.inputs,
        targets=rows.targets,
        checkpoint=Path(state["checkpoint"]),
        onnx_files=onnx_files,
        reference=False,
        meta={"mlflow_run_id": state.get("mlflow_run_id"), "data_hash": state["snapshot"]},
    )


def load_meta(bundle: Path) -> dict:
    return json.loads((bundle / META).read_text())


def bundles(bundle_dir: Path) -> list[Path]:
    """The bundles under `bundle_dir`, by name (`<model>.<architecture>`)."""
    return sorted(p for p in bundle_dir.iterdir() if (p / META).is_file()) if bundle_dir.is_dir() else []


def _place(source: Path, target: Path) -> None:
    """A hard link where the file system allows one (the nightly bundle lives beside the run's files), else a copy;
    a folder (an ensemble's checkpoint) file by file."""
    if source.is_dir():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, copy_function=_link_or_copy)
        return
    target.unlink(missing_ok=True)
    _link_or_copy(source, target)


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)

"""Files of a registered version: what its MLflow model directory holds, and how they are fetched.

A version registered by `registry._register` is self-contained: its model directory (`models:/<name>/<n>`)
holds, beside the fp32 ONNX flavor, `preprocessing/` (the tokenizer or scaler the inputs need) and
`serving/` (the ONNX file of the serving variant the gate chose, and `serving.json` naming it), so
serving needs nothing but the model URI. `run_file` still reads a run's own artifacts (reports, and a
candidate's fp32 export, `RUN_FP32_ONNX`, which the dashboard draws for candidates that were not registered).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

SERVING_MANIFEST = "serving/serving.json"
PREPROCESSING = "preprocessing"
RUN_FP32_ONNX = "onnx/model_fp32.onnx"  # a candidate's fp32 export in its own run (`stages.export`)


@dataclass(frozen=True)
class ServingFiles:
    """A version's model directory, downloaded: the serving variant and its preprocessing files."""

    model_dir: Path
    variant: str
    onnx: Path
    preprocessing: Path
    metrics: dict[str, float]


def attach_serving_files(
    model_id: str, variant: str, onnx_path: Path, preprocessing: list[Path], metrics: dict[str, float]
) -> None:
    """Add `preprocessing/` and `serving/` to the logged model `model_id` (before it is registered)."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory(prefix="serving-files-") as tmp:
        staging = Path(tmp)
        for path in preprocessing:
            (staging / PREPROCESSING).mkdir(exist_ok=True)
            shutil.copy2(path, staging / PREPROCESSING / Path(path).name)
        (staging / "serving").mkdir()
        shutil.copy2(onnx_path, staging / "serving" / Path(onnx_path).name)
        manifest = {
            "variant": variant,
            "onnx": f"serving/{Path(onnx_path).name}",
            "preprocessing": sorted(f"{PREPROCESSING}/{Path(p).name}" for p in preprocessing),
            "metrics": {k: float(v) for k, v in sorted(metrics.items())},
        }
        (staging / SERVING_MANIFEST).write_text(json.dumps(manifest, indent=2))
        MlflowClient().log_model_artifacts(model_id, str(staging))


class ServingFilesError(ValueError):
    """A version's serving files cannot be used; `code` says why in one word (what `/health` shows)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def download_version(name: str, version: str, folder: Path) -> ServingFiles:
    """`models:/<name>/<version>` into `folder`, read through its `serving/serving.json` (`read_manifest`)."""
    import mlflow

    model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(folder)))
    return read_manifest(model_dir, f"{name} v{version}")


def read_manifest(model_dir: Path, label: str) -> ServingFiles:
    """The serving files of a downloaded model directory. Every path in the manifest must resolve inside the
    directory (no absolute path, no `..`, no link out of it): whoever registers a version cannot make the
    server read another file of its host. An empty directory means the version's artifacts are gone (MLflow
    downloads nothing, without an error), and says so."""
    if not model_dir.is_dir() or not any(model_dir.iterdir()):
        raise ServingFilesError(
            "artifacts_missing",
            f"{label}: its model directory is empty: the version's artifacts are gone from the artifact store "
            "(deleted or moved); restore them, or point the alias at another version",
        )
    manifest_path = model_dir / SERVING_MANIFEST
    if not manifest_path.is_file():
        raise ServingFilesError(
            "no_serving_files",
            f"{label} has no {SERVING_MANIFEST} in its model directory: it was registered before "
            "versions carried their serving files; register it again (a forced nightly run) to serve it",
        )
    manifest = json.loads(manifest_path.read_text())
    root = model_dir.resolve()

    def inside(field: str, relative: object) -> Path:
        path = (root / str(relative)).resolve()
        if not isinstance(relative, str) or Path(relative).is_absolute() or not path.is_relative_to(root):
            raise ServingFilesError(
                "manifest_refused",
                f"{label}: {SERVING_MANIFEST} field {field!r} ({relative!r}) is not a file inside the version's "
                "model directory: refused",
            )
        return path

    for entry in manifest.get("preprocessing", []):
        inside("preprocessing", entry)
    return ServingFiles(
        model_dir=model_dir,
        variant=manifest["variant"],
        onnx=inside("onnx", manifest["onnx"]),
        preprocessing=model_dir / PREPROCESSING,
        metrics=manifest.get("metrics", {}),
    )


def flavor_onnx(model_dir: Path) -> Path:
    """The fp32 ONNX file of the model directory's onnx flavor (the variants beside it are other files)."""
    from mlflow.models import Model

    return Path(model_dir) / Model.load(str(model_dir)).flavors["onnx"]["data"]


def run_file(version, artifact_path: str, folder: Path) -> Path:
    """One artifact of the run that produced the version (a tokenizer, a scaler, a report); `version` may
    also be a run id."""
    import mlflow

    run_id = version if isinstance(version, str) else version.run_id
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=str(folder)))

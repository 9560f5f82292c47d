"""Files of a registered version, fetched from MLflow: the serving variant and what sits beside it."""

from __future__ import annotations

from pathlib import Path


def serving_onnx(name: str, version, folder: Path) -> tuple[Path, str]:
    """The ONNX file of the version's serving variant (tag `serving_variant`, chosen by the gate):
    ONNX Runtime's optimised copy saved at export when the version has one, else the plain file."""
    import mlflow
    from mlflow.exceptions import MlflowException

    variant = version.tags.get("serving_variant", "fp32")
    try:
        return run_file(version, f"optimized/model_{variant}.opt.onnx", folder), variant
    except (MlflowException, OSError):
        pass
    if variant == "fp32":
        model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version.version}", dst_path=str(folder)))
        return next(model_dir.rglob("*.onnx")), variant
    return run_file(version, f"variants/model_{variant}.onnx", folder), variant


def run_file(version, artifact_path: str, folder: Path) -> Path:
    """One artifact of the run that produced the version (a tokenizer, a scaler, a report)."""
    import mlflow

    return Path(
        mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=artifact_path, dst_path=str(folder))
    )

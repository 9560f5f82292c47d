"""A stock model is fitted once a night per machine, whichever candidate needs it first.

The ensemble's members are the LSTM and Transformer candidates trained again: the same data, scaler,
batches, config and seed, and on the sample bit for bit the same weights. When the candidates of a
night run on one machine (`airflow dags test`, `make demo`, a LocalExecutor), fitting them twice
is wasted time, so every fit leaves a record in its candidate's folder (`reports/fit_<architecture>.json`:
what fitting reported, where the Keras file is, and the key it was fitted under) and a later fit of
the same architecture under the same key in the same DAG run copies that file instead of fitting.

The key is the architecture, the config, the target scale and a hash of the validation windows and
targets, so a copy is only ever of a model fitted on the same rows in the same way. A lock per DAG run
and architecture makes two tasks on one machine take turns, so the second copies the first's model
instead of fitting beside it. On another machine the run folder is not there and the model is fitted
again, to the same weights. The copy's run says which candidate fitted it (`fitted_in`); its per-epoch
curves are on that candidate's run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

RECORD = "reports/fit_{architecture}.json"  # in the candidate's folder


def fit_key(architecture: str, cfg, target_scale: float, val_inputs: np.ndarray, val_targets: np.ndarray) -> str:
    """What must match for a fitted model to be reused: architecture, config, target scale, validation rows."""
    digest = hashlib.sha256()
    digest.update(json.dumps([architecture, asdict(cfg), float(target_scale)], sort_keys=True, default=str).encode())
    digest.update(np.ascontiguousarray(val_inputs, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(val_targets, dtype=np.float32).tobytes())
    return digest.hexdigest()


def keras_forecast(model) -> Callable[[np.ndarray], np.ndarray]:
    """A stock Keras model as a predictor: scaled windows -> predicted log returns [rows]."""
    return lambda inputs: model.predict(inputs, verbose=0, batch_size=1024).reshape(-1)


def fitted_keras(model, history) -> tuple[Callable[[np.ndarray], np.ndarray], dict, dict]:
    """What a fit hands `fit_once`: the predictor, the best validation loss and epochs run, the parameter count."""
    losses = history.history
    metrics = {"best_val_loss": float(min(losses["val_loss"])), "epochs_run": float(len(losses["loss"]))}
    return keras_forecast(model), metrics, {"parameters": model.count_params()}


def load_keras_file(path: Path):
    from mlops_onnx.models.keras_native import load_keras

    return load_keras().models.load_model(path)


@contextlib.contextmanager
def _turn(run_folder: Path, architecture: str) -> Iterator[None]:
    """Fits of one architecture in one DAG run on this machine, one at a time (a lock outside the run folder,
    so it is never uploaded with the run's files)."""
    name = hashlib.sha256(str(run_folder.resolve()).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"mlops-fit-{name}-{architecture}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def earlier_fit(run_folder: Path, architecture: str, key: str) -> tuple[dict, Path] | None:
    """The record and Keras file of a fit of `architecture` under `key` in this run folder, if one finished."""
    for record_path in sorted(run_folder.glob("*/" + RECORD.format(architecture=architecture))):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        source = run_folder / record.get("checkpoint", "")
        if record.get("key") == key and source.is_file():
            return record, source
    return None


def fit_once(
    architecture: str,
    key: str,
    checkpoint: Path,
    workdir: Path | None,
    fit: Callable[[], tuple[Callable, dict, dict]],
) -> tuple[Callable, dict, dict]:
    """`fit()` (-> predict, metrics, params, having saved the Keras model at `checkpoint`), unless another
    candidate of this DAG run (`workdir.parent`) on this machine already fitted the same model: then its Keras
    file is copied to `checkpoint` and loaded. Without `workdir` (a direct call) it just fits."""
    if workdir is None:
        return fit()
    run_folder = workdir.parent
    with _turn(run_folder, architecture):
        found = earlier_fit(run_folder, architecture, key)
        if found is not None:
            record, source = found
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, checkpoint)
            predict, metrics, params = keras_forecast(load_keras_file(checkpoint)), record["metrics"], record["params"]
            fitted_in = record["fitted_in"]
            print(f"[{architecture}] fitted earlier this night in {fitted_in}: copied, not fitted again", flush=True)
        else:
            predict, metrics, params = fit()
            fitted_in = checkpoint.relative_to(run_folder).as_posix()
        record_path = workdir / RECORD.format(architecture=architecture)
        record_path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "architecture": architecture,
            "key": key,
            "checkpoint": checkpoint.relative_to(run_folder).as_posix(),
            "fitted_in": fitted_in,
            "metrics": metrics,
            "params": params,
        }
        record_path.write_text(json.dumps(record, indent=2))
    return predict, metrics, {**params, "fitted_in": fitted_in}

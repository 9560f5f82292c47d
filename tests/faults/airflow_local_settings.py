"""Test-only Airflow cluster policy that injects faults into a nightly DAG run (never used in production).

`faults.install_fault_policy` copies this file into `$AIRFLOW_HOME/config/`, where Airflow imports it.
`TEST_FAULTS` lists `task:action[+action]` pairs; the actions run once, just before the task's first
try (an `on_execute_callback`), so the task's retries run without the fault:

- `stop_mlflow_before_<function>`: kill the MLflow server (its process group id is in
  `$TEST_MLFLOW_PGID_FILE`) in the middle of the task, just before its first call of `mlflow.<function>`:
  `start_run` (the task's logging) or `register_model` (the model is logged by then, the version not
  yet created). The call then fails at once, however long the task ran before it.
- `truncate_<variant>`: cut the ONNX file of `fp32` (the export) or of a quantized variant in half.
- `drift_<variant>`: scale its first conv kernel by 1.5 (it runs; the outputs drift).
- `break_<variant>`: replace its first conv kernel by noise of the same dtype (it still loads and runs,
  with chance-level accuracy).
- `break_serving` (the gate task): the serving file the registry attaches to the new version is bytes ONNX
  Runtime cannot read (parity and the offline checks ran on the good files before).
"""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path


def task_policy(task) -> None:
    pairs = (item.split(":", 1) for item in os.environ.get("TEST_FAULTS", "").split(",") if ":" in item)
    # `parity` names the candidates' mapped `candidate.parity` too: every candidate's instance gets the fault.
    action = dict(pairs).get(task.task_id.rsplit(".", 1)[-1])
    if action is not None:
        task.on_execute_callback = [*(task.on_execute_callback or []), functools.partial(_inject, action)]


def _inject(actions: str, context) -> None:
    ti = context["ti"]
    if ti.try_number != 1:
        return
    for action in actions.split("+"):
        print(f"[fault] {action} before {ti.task_id} try {ti.try_number}", flush=True)
        _apply(action, ti)


def _apply(action: str, ti) -> None:
    if action.startswith("stop_mlflow_before_"):
        import mlflow

        name = action.removeprefix("stop_mlflow_before_")
        original = getattr(mlflow, name)

        def stop_then_call(*args, **kwargs):
            setattr(mlflow, name, original)  # once: the retry calls MLflow normally
            print(f"[fault] stopping MLflow just before mlflow.{name}", flush=True)
            os.killpg(int(Path(os.environ["TEST_MLFLOW_PGID_FILE"]).read_text()), signal.SIGKILL)
            return original(*args, **kwargs)

        setattr(mlflow, name, stop_then_call)
    elif action == "break_serving":
        from mlops_onnx.serving import artifacts

        original = artifacts.attach_serving_files

        def broken(model_id, variant, serving, *args, **kwargs):
            bad = Path(serving).with_name(f"broken-{Path(serving).name}")
            bad.write_bytes(b"not an onnx graph" * 64)
            print(f"[fault] registering {bad.name} as the serving file of {model_id}", flush=True)
            return original(model_id, variant, bad, *args, **kwargs)

        artifacts.attach_serving_files = broken
    else:
        fault, _, variant = action.partition("_")
        quantize = ti.task_id.rsplit(".", 1)[0] + ".quantize" if "." in ti.task_id else "quantize"
        state = ti.xcom_pull(task_ids=quantize, map_indexes=ti.map_index)
        path = _file(state["onnx_fp32"] if variant == "fp32" else state["variants"][variant]["path"])
        if fault == "truncate":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif fault == "drift":
            _rewrite_first_conv(path, lambda weights, rng: weights * 1.5)
        elif fault == "break":
            _rewrite_first_conv(path, _noise)
        else:
            raise ValueError(f"unknown fault {action!r}")


def _file(location: str) -> Path:
    """The file behind a state entry. Tasks hand on storage URLs; the tests' storage is the default `file://`
    folder, the copy the next task pulls, so the fault goes there."""
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(location).path)) if location.startswith("file://") else Path(location)


def _noise(weights, rng):
    import numpy as np

    if np.issubdtype(weights.dtype, np.integer):
        info = np.iinfo(weights.dtype)
        return rng.integers(info.min, info.max, size=weights.shape, endpoint=True).astype(weights.dtype)
    return rng.normal(0, float(np.abs(weights).max()), size=weights.shape).astype(weights.dtype)


def _rewrite_first_conv(path: Path, change) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        weights = numpy_helper.to_array(init)
        if weights.ndim == 4:
            init.CopyFrom(numpy_helper.from_array(np.asarray(change(weights, rng), dtype=weights.dtype), init.name))
            break
    else:
        raise ValueError(f"{path}: no 4-D initializer to change")
    onnx.save(model, str(path))

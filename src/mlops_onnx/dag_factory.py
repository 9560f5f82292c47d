"""One factory builds every nightly DAG from a pipeline entry in `catalog.PIPELINES`.

Each task is a thin call into `mlops_onnx.stages`; heavy libraries are imported inside the
stages, never when the scheduler parses this file. Failures that a retry cannot fix (bad data,
an ONNX export that does not match) fail the task at once instead of retrying.
"""

from __future__ import annotations

import functools
import time
from datetime import timedelta

import pendulum
from airflow.sdk import dag, get_current_context, task

from mlops_onnx.catalog import PIPELINES, Pipeline
from mlops_onnx.links import model_url
from mlops_onnx.settings import get_settings


def default_args() -> dict:
    """Every task talks to MLflow, so every task retries, waiting twice as long each time (30 s, 60 s, …
    at most 10 min by default): an MLflow server that is down for a while fails a try, not the night.
    MLOPS_TASK_RETRIES and MLOPS_RETRY_DELAY_SECONDS shorten this in tests."""
    settings = get_settings()
    return {
        "owner": "ml-platform",
        "retries": settings.task_retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,  # Airflow 3: the multiplier (True is read as 2.0 too)
        "max_retry_delay": timedelta(minutes=10),
    }


def _call(pipeline: Pipeline, stage: str, *upstream: dict) -> dict:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from mlops_onnx import stages
    from mlops_onnx.sources import SourceError
    from mlops_onnx.tracking import RunContext
    from mlops_onnx.validation import DataValidationError

    context = get_current_context()
    logical_date = context.get("logical_date")  # None for a run triggered without one
    ctx = RunContext(dag_id=context["dag"].dag_id, run_id=context["run_id"], try_number=context["ti"].try_number,
                     logical_date=logical_date.isoformat() if logical_date else None)  # fmt: skip
    _export_kaggle_connection()
    state = {k: v for part in upstream for k, v in part.items()}
    _push_links(context["ti"], pipeline.model, state)  # also on a failed task, where the reason is
    print(f"[{pipeline.model}] ▶ {stage} started", flush=True)
    started = time.perf_counter()
    try:
        result = getattr(stages, stage)(pipeline.model, ctx, *([state] if upstream else []))
    except stages.StageSkipped as exc:
        print(f"[{pipeline.model}] ⏭ {stage} skipped after {time.perf_counter() - started:.1f}s: {exc}", flush=True)
        raise AirflowSkipException(str(exc)) from exc
    except (DataValidationError, stages.ParityError) as exc:
        print(f"[{pipeline.model}] ✗ {stage} failed after {time.perf_counter() - started:.1f}s: {exc}", flush=True)
        raise AirflowFailException(str(exc)) from exc
    except SourceError as exc:
        print(f"[{pipeline.model}] ✗ {stage} failed after {time.perf_counter() - started:.1f}s: {exc}", flush=True)
        if not exc.retryable:  # missing or rejected credentials, a missing folder: a retry cannot help
            raise AirflowFailException(str(exc)) from exc
        raise
    print(f"[{pipeline.model}] ✓ {stage} finished in {time.perf_counter() - started:.1f}s", flush=True)
    _push_links(context["ti"], pipeline.model, result)
    return result


def _push_links(ti, model: str, state: dict) -> None:
    """XComs behind the plugin's "MLflow run" / "MLflow model" extra links (plugins/mlflow_links.py)."""
    from mlops_onnx import links

    if state.get("mlflow_experiment_id") and state.get("mlflow_run_id"):
        ti.xcom_push(key=links.MLFLOW_RUN_XCOM, value=links.run_url(state["mlflow_experiment_id"],
                                                                    state["mlflow_run_id"]))  # fmt: skip
    ti.xcom_push(key=links.MLFLOW_MODEL_XCOM, value=links.model_url(model, state.get("version")))


def _export_kaggle_connection() -> None:
    """Credentials from the Airflow connection `kaggle_default` when the environment has none."""
    import os

    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return
    try:
        from airflow.sdk import BaseHook

        connection = BaseHook.get_connection("kaggle_default")
    except Exception:  # no such connection: the kaggle source reports missing credentials itself
        return
    if connection.login and connection.password:
        os.environ["KAGGLE_USERNAME"] = connection.login
        os.environ["KAGGLE_KEY"] = connection.password


# One XCom per task (the whole state dict), not one per key as a `-> dict` annotation would infer.
pipeline_task = functools.partial(task, multiple_outputs=False)


def nightly_dag(model: str):
    pipeline = PIPELINES[model]

    @dag(
        dag_id=pipeline.dag_id,
        description=f"{pipeline.title}: ingest → validate → train → ONNX → quantize → parity → benchmark → gate",
        schedule=pipeline.schedule,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        default_args=default_args(),
        dagrun_timeout=timedelta(hours=4),
        tags=["nightly", "onnx", pipeline.model],
        doc_md=f"""
### {pipeline.title} — nightly

`ingest` snapshots the dataset (content-hashed, atomic) from the configured source,
`validate` runs its Great Expectations suite and moves `last_good` only on success,
`train` fits the native model (per-epoch curves in MLflow), `export` writes ONNX fp32,
`quantize` builds the variants, `parity` compares every variant with the native model on the
whole test split, `benchmark_cpu`/`benchmark_gpu` measure latency, and `gate_and_register`
registers **`{pipeline.model}`** in MLflow only if every check passed; `champion` moves only
to a better version.

MLflow experiment: `{pipeline.model}` (one MLflow run per DAG run, tagged with this run id);
each task has an **MLflow run** and an **MLflow model** extra link.
Registered model in the MLflow UI: [{pipeline.model}]({model_url(pipeline.model)}).
""",
    )
    def nightly():
        @pipeline_task()
        def ingest() -> dict:
            return _call(pipeline, "ingest")

        @pipeline_task()
        def validate(state: dict) -> dict:
            return _call(pipeline, "validate", state)

        @pipeline_task(execution_timeout=timedelta(hours=2))
        def train(state: dict) -> dict:
            return _call(pipeline, "train", state)

        @pipeline_task()
        def export(state: dict) -> dict:
            return _call(pipeline, "export", state)

        @pipeline_task()
        def quantize(state: dict) -> dict:
            return _call(pipeline, "quantize", state)

        @pipeline_task()
        def parity(state: dict) -> dict:
            return _call(pipeline, "parity", state)

        @pipeline_task()
        def benchmark_cpu(state: dict) -> dict:
            return _call(pipeline, "benchmark_cpu", state)

        # Retries too: a GPU failure is reported and skipped inside the stage; what fails the task is MLflow.
        @pipeline_task(pool="gpu", queue="gpu")
        def benchmark_gpu(state: dict) -> dict:
            return _call(pipeline, "benchmark_gpu", state)

        # The GPU benchmark is optional: skipped without CUDA, and the gate does not need it.
        @pipeline_task(trigger_rule="none_failed")
        def gate_and_register(state: dict) -> dict:
            return _call(pipeline, "gate_and_register", state)

        checked = parity(quantize(export(train(validate(ingest())))))
        benchmark_gpu(checked) >> gate_and_register(benchmark_cpu(checked))

    return nightly()

"""One factory builds every nightly DAG from a pipeline entry in `catalog.PIPELINES`.

Each task imports its stage (`mlops_onnx.stages.<task>`) and calls it with the model's spec, resolved
once per task; heavy libraries are imported inside the stages, never when the scheduler parses this
file. Failures that a retry cannot fix (bad data, an ONNX export that does not match) fail the task
at once instead of retrying.

Scheduling: every night at 02:00 UTC, and at once when the dataset's source asset gets an event
(`AssetOrTimeSchedule`); `ingest` emits an event on the dataset's snapshot asset only when it
published a snapshot never seen before. One run per DAG at a time (`max_active_runs=1`: a manual
trigger during the nightly run queues behind it) and one `gate_and_register` per model at a time
(the model's one-slot registry pool), so promotions are serialised across every worker.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import (
    Asset,
    AssetAlias,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    dag,
    get_current_context,
    task,
    task_group,
)
from airflow.sdk.exceptions import AirflowFailException

from mlops_onnx.approval import APPROVE, REJECT
from mlops_onnx.catalog import PIPELINES, Pipeline, registry_pool
from mlops_onnx.links import model_url
from mlops_onnx.notify import night_failed
from mlops_onnx.settings import get_settings


def snapshot_alias(pipeline: Pipeline) -> AssetAlias:
    """`ingest`'s outlet: an alias, because an Asset outlet emits an event on every success and ours must
    emit only when the snapshot is new (the event lands on `snapshot_asset`)."""
    return AssetAlias(f"{pipeline.dataset.name}_snapshots")


def snapshot_asset(pipeline: Pipeline) -> Asset:
    """The dataset's validated-input history: one event per new content-hashed snapshot (hash in `extra`)."""
    return Asset(
        name=f"{pipeline.dataset.name}_snapshot", uri=f"mlops-snapshot://{pipeline.dataset.name}", group="dataset"
    )


def source_asset(pipeline: Pipeline) -> Asset:
    """Announces new upstream data (an event from a landing job or `POST /api/v2/assets/events`): the DAG
    then runs at once instead of waiting for the night."""
    return Asset(name=f"{pipeline.dataset.name}_source", uri=f"kaggle://{pipeline.dataset.slug}", group="dataset")


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


def _call(pipeline: Pipeline, stage: Callable[..., dict], *upstream: dict):
    """Run `stage` as this task: with the spec of the state's candidate architecture (the task's default
    candidate before the candidates split), the run context and the merged upstream state."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from mlops_onnx.models import load_spec
    from mlops_onnx.sources import SourceError
    from mlops_onnx.stages import NoCandidate, ParityError, StageSkipped
    from mlops_onnx.tracking import RunContext
    from mlops_onnx.validation import DataValidationError

    context = get_current_context()
    logical_date = context.get("logical_date")  # None for a run triggered without one
    ctx = RunContext(
        dag_id=context["dag"].dag_id,
        run_id=context["run_id"],
        try_number=context["ti"].try_number,
        logical_date=logical_date.isoformat() if logical_date else None,
        force_retrain=bool(context["params"].get("force_retrain", False)),
    )
    _export_kaggle_connection()
    state = {k: v for part in upstream for k, v in part.items()}
    _push_links(context["ti"], pipeline.model, state)  # also on a failed task, where the reason is
    name = stage.__name__
    architecture = state.get("architecture")
    spec = load_spec(pipeline.model, architecture)
    label = f"{pipeline.model}/{architecture}" if architecture else pipeline.model
    print(f"[{label}] ▶ {name} started", flush=True)
    started = time.perf_counter()
    try:
        result = stage(spec, ctx, *([state] if upstream else []))
    except StageSkipped as exc:
        print(f"[{label}] ⏭ {name} skipped after {time.perf_counter() - started:.1f}s: {exc}", flush=True)
        raise AirflowSkipException(str(exc)) from exc
    except Exception as exc:
        print(f"[{label}] ✗ {name} failed after {time.perf_counter() - started:.1f}s: {exc}", flush=True)
        if architecture:  # the gate and the MLflow UI say why this candidate dropped out
            _record_candidate(state, {"candidate_status": "failed", "failed_stage": name, "failure_reason": exc})
        if isinstance(exc, DataValidationError | ParityError | NoCandidate) or (
            isinstance(exc, SourceError) and not exc.retryable
        ):  # bad data, an export that does not match, missing credentials: a retry cannot help
            raise AirflowFailException(str(exc)) from exc
        raise
    print(f"[{label}] ✓ {name} finished in {time.perf_counter() - started:.1f}s", flush=True)
    if architecture:
        _record_candidate(state, {"candidate_status": f"passed {name}"})
    if isinstance(result, dict):
        _push_links(context["ti"], pipeline.model, result)
        if result.get("snapshot_new"):  # the asset view shows when the dataset last changed, and to what
            context["outlet_events"][snapshot_alias(pipeline)].add(
                snapshot_asset(pipeline), extra={"snapshot": result["snapshot"], "source": result["data_source"]}
            )
    return result


def _record_candidate(state: dict, tags: dict) -> None:
    """Status tags on the candidate's MLflow run; never fails the task (MLflow being down fails it anyway)."""
    from mlops_onnx import tracking

    try:
        tracking.configure(get_settings())
        tracking.set_run_tags(state["mlflow_run_id"], tags)
    except Exception as exc:  # a status tag is not worth a failed task
        print(f"could not tag the candidate's MLflow run: {exc}", flush=True)


def _push_links(ti, model: str, state: dict) -> None:
    """XComs behind the plugin's "MLflow run" / "MLflow model" extra links (plugins/mlflow_links.py)."""
    from mlops_onnx import links

    if state.get("mlflow_experiment_id") and state.get("mlflow_run_id"):
        ti.xcom_push(
            key=links.MLFLOW_RUN_XCOM, value=links.run_url(state["mlflow_experiment_id"], state["mlflow_run_id"])
        )
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


class PromotionApproval(HITLOperator):
    """`approve_promotion`: when the gate registered a version `awaiting_approval` (MLOPS_PROMOTION_APPROVAL),
    Airflow's human-in-the-loop form asks whether it becomes champion, with the gate's numbers and plot
    (`approval.request`); no answer within MLOPS_APPROVAL_TIMEOUT_HOURS answers Reject. Skipped otherwise."""

    def __init__(self, *, model: str, gate_task_id: str, **kwargs) -> None:
        super().__init__(
            subject=f"{model}: approve a new champion?",  # the request's own subject replaces it at run time
            options=[APPROVE, REJECT],
            defaults=[REJECT],
            response_timeout=timedelta(hours=get_settings().approval_timeout_hours),
            **kwargs,
        )
        self.model, self.gate_task_id = model, gate_task_id

    def execute(self, context):
        from airflow.sdk.exceptions import AirflowSkipException

        from mlops_onnx import notify

        state = context["ti"].xcom_pull(task_ids=self.gate_task_id) or {}
        asked = state.get("approval")
        if not asked:
            raise AirflowSkipException(f"nothing to approve: {state.get('promotion_decision') or 'nothing registered'}")
        self.subject, self.body = asked["subject"], asked["body"]
        form = (
            f"{notify.airflow_run_url(context['dag'].dag_id, context['run_id'])}/tasks/{self.task_id}/required_actions"
        )
        notify.send(
            notify.Message(notify.APPROVAL_NEEDED, self.model, f"v{asked['version']}", asked["why"], form, form)
        )
        return super().execute(context)


# One XCom per task (the whole state dict), not one per key as a `-> dict` annotation would infer.
pipeline_task = functools.partial(task, multiple_outputs=False)


def nightly_dag(model: str):
    pipeline = PIPELINES[model]
    settings = get_settings()
    # A night that waits for approval may take up to MLOPS_APPROVAL_TIMEOUT_HOURS longer before it ends.
    waits = timedelta(hours=settings.approval_timeout_hours if settings.promotion_approval != "never" else 0)

    @dag(
        dag_id=pipeline.dag_id,
        description=f"{pipeline.title}: ingest → validate → train → ONNX → quantize → parity → benchmark → gate",
        schedule=AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(pipeline.schedule, timezone="UTC"), assets=source_asset(pipeline)
        ),
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        dagrun_timeout=timedelta(hours=4) + waits,
        on_failure_callback=night_failed,  # one message to MLOPS_NOTIFY_EMAIL (notify.py)
        params={
            "force_retrain": Param(
                False,
                type="boolean",
                title="Force retrain",
                description="Train even if the data, the code and the config are unchanged "
                "since a run that got through the gate.",
            )
        },
        tags=["nightly", "onnx", pipeline.model],
        doc_md=f"""
### {pipeline.title} — nightly

`ingest` snapshots the dataset (content-hashed, atomic) from the configured source (an event on the
`{snapshot_asset(pipeline).name}` asset when the snapshot is new), `validate` runs its Great Expectations
suite, writes a drift report against `last_good` and moves `last_good` only on success. `candidates`
lists tonight's candidate architectures ({", ".join(c.architecture for c in pipeline.candidates)}; set
`MLOPS_CANDIDATES_{pipeline.task.upper()}` to run fewer), and each runs the `candidate` group as its own
mapped task instances: `train` first compares the candidate's fingerprint (data hash, code version, config
hash) with earlier runs: **when nothing changed since a run that got through the gate, it and everything
after it is skipped** (tick *Force retrain* in the trigger form to train anyway). Otherwise it fits the
native model (per-epoch curves in MLflow), `export` writes ONNX fp32, `quantize` builds the variants,
`parity` compares every variant with the native model on the test split (a stratified sample of at most
`MLOPS_PARITY_MAX_ROWS` rows of a larger one), `benchmark_cpu`/
`benchmark_gpu` measure latency. A candidate that fails a stage stops there; the others go on.
`gate_and_register` takes the best candidate that passed every check and registers it as
**`{pipeline.model}`** (tag `architecture`); `champion` moves only when it beats the champion, whatever its
architecture, **on the same test rows, by a paired test** (McNemar for classifiers, Diebold–Mariano for
the forecaster). With `MLOPS_PROMOTION_APPROVAL=close` (now `{settings.promotion_approval}`), a candidate better
but not significantly so waits in `approve_promotion` (*Required actions*) and `apply_approval` applies
the answer. `prune` keeps the registry and the storage bounded.

MLflow experiment: `{pipeline.model}`: one MLflow run per DAG run (data, validation, decision) with one
nested run per candidate (tag `architecture`); each task has an **MLflow run** and an **MLflow model**
extra link.
Registered model in the MLflow UI: [{pipeline.model}]({model_url(pipeline.model)}).
""",
    )
    def nightly():
        @pipeline_task(outlets=[snapshot_alias(pipeline)])
        def ingest() -> dict:
            from mlops_onnx.stages.ingest import ingest as stage

            return _call(pipeline, stage)

        @pipeline_task()
        def validate(state: dict) -> dict:
            from mlops_onnx.stages.validate import validate as stage

            return _call(pipeline, stage, state)

        @pipeline_task()
        def candidates(state: dict) -> list[dict]:
            from mlops_onnx.stages.candidates import candidates as stage

            return _call(pipeline, stage, state)

        # One instance of each task per candidate architecture (dynamic task mapping): a candidate that fails
        # a stage stops there, the others go on.
        @task_group
        def candidate(state: dict):
            @pipeline_task(execution_timeout=timedelta(hours=2))
            def train(state: dict) -> dict:
                from mlops_onnx.stages.train import train as stage

                return _call(pipeline, stage, state)

            @pipeline_task()
            def export(state: dict) -> dict:
                from mlops_onnx.stages.export import export as stage

                return _call(pipeline, stage, state)

            @pipeline_task()
            def quantize(state: dict) -> dict:
                from mlops_onnx.stages.quantize import quantize as stage

                return _call(pipeline, stage, state)

            @pipeline_task()
            def parity(state: dict) -> dict:
                from mlops_onnx.stages.parity import parity as stage

                return _call(pipeline, stage, state)

            @pipeline_task()
            def benchmark_cpu(state: dict) -> dict:
                from mlops_onnx.stages.benchmark_cpu import benchmark_cpu as stage

                return _call(pipeline, stage, state)

            # Retries too: a GPU failure is reported and skipped inside the stage; what fails the task is MLflow.
            @pipeline_task(pool="gpu", queue="gpu")
            def benchmark_gpu(state: dict) -> dict:
                from mlops_onnx.stages.benchmark_gpu import benchmark_gpu as stage

                return _call(pipeline, stage, state)

            checked = parity(quantize(export(train(state))))
            gpu_benchmarks.append(benchmark_gpu(checked))
            return benchmark_cpu(checked)

        # Runs once every candidate is done, whichever way: it registers the best candidate that got through
        # (when there is one) and says why the others did not; it fails when the data did not get through or
        # every candidate failed, and skips when every candidate was unchanged since a run that got through.
        @pipeline_task(trigger_rule="all_done", pool=registry_pool(pipeline.model))
        def gate_and_register(results, state: dict | None) -> dict:
            from mlops_onnx.stages.gate_and_register import gate_and_register as stage

            if state is None:
                raise AirflowFailException("the data did not get through ingest and validate: nothing to gate")
            return _call(pipeline, stage, state, {"candidate_results": _results(results)})

        # MLOPS_PROMOTION_APPROVAL: a human answers in Airflow's form (skipped when the gate asks nobody), and
        # the answer moves `champion` or keeps it (skipped with the form).
        approve = PromotionApproval(task_id="approve_promotion", model=pipeline.model, gate_task_id="gate_and_register")

        @pipeline_task(pool=registry_pool(pipeline.model))
        def apply_approval(state: dict, answer: dict) -> dict:
            from mlops_onnx.stages.apply_approval import apply_approval as stage

            return _call(pipeline, stage, {"approval": state["approval"], "approval_answer": answer})

        # A teardown: runs after every night, skipped or failed, and never decides the run's state.
        @pipeline_task()
        def prune() -> dict:
            from mlops_onnx.stages.prune import prune as stage

            return _call(pipeline, stage)

        gpu_benchmarks: list = []
        validated = validate(ingest())
        benchmarked = candidate.expand(state=candidates(validated))
        gate = gate_and_register(benchmarked, validated)
        gpu_benchmarks[0] >> gate
        applied = apply_approval(gate, approve.output)
        gate >> approve
        applied >> prune().as_teardown()

    return nightly()


def _results(results) -> list[dict]:
    """The candidates' final states as a list: Airflow hands over the one state itself when only one
    mapped instance returned a value, and None when none did."""
    if results is None:
        return []
    if isinstance(results, dict):
        return [results]
    return [r for r in results if r]

"""Every DAG file imports cleanly, has the nightly shape, and parses without torch or tensorflow."""

import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from mlops_onnx.catalog import NIGHTLY, PIPELINES, airflow_pools, registry_pool

# Per candidate architecture (one mapped instance each): the `candidate` task group.
CANDIDATE_TASKS = ("train", "export", "quantize", "parity", "benchmark_cpu", "benchmark_gpu")
EXPECTED_TASKS = {"ingest", "validate", "candidates", "gate_and_register", "approve_promotion", "apply_approval"}
EXPECTED_TASKS |= {"prune"} | {f"candidate.{name}" for name in CANDIDATE_TASKS}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {p.dag_id for p in PIPELINES.values()} <= set(dagbag.dag_ids)


@pytest.mark.parametrize("pipeline", list(PIPELINES.values()), ids=lambda p: p.dag_id)
def test_nightly_shape(dagbag, pipeline):
    from airflow.sdk import Asset, AssetAlias, AssetOrTimeSchedule

    dag = dagbag.dags[pipeline.dag_id]
    assert {t.task_id for t in dag.tasks} == EXPECTED_TASKS
    # Nightly at 02:00 UTC, and at once on an event of the dataset's source asset.
    assert isinstance(dag.timetable, AssetOrTimeSchedule) and dag.catchup is False
    assert dag.timetable.timetable.expression == NIGHTLY
    assert dag.timetable.asset_condition == Asset(
        name=f"{pipeline.dataset.name}_source", uri=f"kaggle://{pipeline.dataset.slug}", group="dataset"
    )
    assert dag.max_active_runs == 1  # a manual trigger during the nightly run queues behind it
    assert dag.params["force_retrain"] is False  # a checkbox in the trigger form, off by default
    assert dag.doc_md and pipeline.model in dag.doc_md
    assert dag.get_task("ingest").outlets == [AssetAlias(f"{pipeline.dataset.name}_snapshots")]
    for task in dag.tasks:  # every task talks to MLflow: every task retries, with doubling delays
        assert task.retries == 2 and task.retry_exponential_backoff == 2.0
        assert task.retry_delay.total_seconds() == 30 and task.max_retry_delay.total_seconds() == 600
    gpu = dag.get_task("candidate.benchmark_gpu")
    assert gpu.pool == "gpu" and gpu.queue == "gpu"
    group = dag.task_group_dict["candidate"]
    assert type(group).__name__ == "MappedTaskGroup"  # expanded over the `candidates` task's list at run time
    assert dag.get_task("candidate.train").upstream_task_ids == {"candidates"}
    assert dag.get_task("candidates").upstream_task_ids == {"validate"}
    gate = dag.get_task("gate_and_register")
    # After every candidate, whichever way it went: a failed candidate does not stop the others' registration.
    assert gate.trigger_rule == "all_done"
    assert gate.pool == registry_pool(pipeline.model) and gate.pool_slots == 1
    assert (registry_pool(pipeline.model), 1) in {(name, slots) for name, slots, _ in airflow_pools()}
    assert gate.upstream_task_ids == {"candidate.benchmark_cpu", "candidate.benchmark_gpu", "validate"}
    assert dag.get_task("validate").upstream_task_ids == {"ingest"}
    # MLOPS_PROMOTION_APPROVAL: Airflow's human-in-the-loop form after the gate, then its answer applied
    approve = dag.get_task("approve_promotion")
    assert approve.upstream_task_ids == {"gate_and_register"} and approve.options == ["Approve", "Reject"]
    assert approve.defaults == ["Reject"] and approve.response_timeout.total_seconds() == 12 * 3600
    applied = dag.get_task("apply_approval")
    assert applied.upstream_task_ids == {"gate_and_register", "approve_promotion"}
    assert applied.pool == registry_pool(pipeline.model)
    assert dag.dagrun_timeout.total_seconds() == 4 * 3600  # MLOPS_PROMOTION_APPROVAL=never: nobody is waited for
    prune = dag.get_task("prune")  # after every night, never deciding the run's state
    assert prune.is_teardown and prune.upstream_task_ids == {"apply_approval"}
    assert not prune.on_failure_fail_dagrun


def test_parsing_imports_no_heavy_framework():
    code = (
        "import runpy, sys, glob\n"
        f"for f in glob.glob({str(REPO_ROOT / 'dags')!r} + '/*.py'): runpy.run_path(f)\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'onnxruntime', 'mlflow', 'great_expectations')"
        " if m in sys.modules]\n"
        "print('heavy=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "heavy="

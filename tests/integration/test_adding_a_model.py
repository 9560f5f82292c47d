"""Adding a model takes a spec module and one catalog entry: a toy spec goes through every stage."""

from __future__ import annotations

import pytest
from conftest import mlflow_client, run_stage
from toy_spec import SPEC, TOY_POINTS, write_points

from mlops_onnx.tracking import RunContext

pytestmark = pytest.mark.slow  # real servers, registries and trained models: make test, not make test-fast

CANDIDATE_STAGES = ("train", "export", "quantize", "parity", "benchmark_cpu")


@pytest.fixture
def toy_in_the_catalog(monkeypatch):
    from mlops_onnx import catalog

    entry = catalog.Pipeline(
        SPEC.name,
        "toy_points",
        "toy_points_nightly",
        "Toy points classifier",
        TOY_POINTS,
        (catalog.Candidate(SPEC.architecture, "toy_spec"),),
    )
    monkeypatch.setitem(catalog.PIPELINES, SPEC.name, entry)
    return entry


def test_a_spec_module_and_a_catalog_entry_make_a_registered_champion(settings_env, toy_in_the_catalog, tmp_path):
    write_points(tmp_path / "data")
    settings = settings_env(
        MLOPS_DATA_SOURCE="local", MLOPS_DATA_DIR=str(tmp_path / "data"), MLOPS_BENCH_RUNS="10", MLOPS_BENCH_WARMUP="1"
    )
    ctx = RunContext(toy_in_the_catalog.dag_id, "night-1")
    night = run_stage("validate", SPEC.name, ctx, run_stage("ingest", SPEC.name, ctx))
    (candidate,) = run_stage("candidates", SPEC.name, ctx, night)
    for stage in CANDIDATE_STAGES:
        candidate = run_stage(stage, SPEC.name, ctx, candidate)
    state = run_stage("gate_and_register", SPEC.name, ctx, night, {"candidate_results": [candidate]})
    assert state["parity"]["fp32"] is True and state["metrics"]["test_accuracy"] > 0.8
    client = mlflow_client(settings.home)
    champion = client.get_model_version_by_alias(SPEC.name, "champion")
    assert str(champion.version) == str(state["version"]) == "1"
    assert champion.tags["data_hash"] == state["snapshot"] and champion.tags["airflow_run_id"] == "night-1"
    assert champion.tags["architecture"] == SPEC.architecture
    run = client.get_run(state["mlflow_run_id"])
    assert run.data.tags["promotion_decision"] == "first_champion"
    assert run.data.tags["architecture"] == SPEC.architecture
    assert run.data.tags["mlflow.parentRunId"] == night["mlflow_run_id"]
    night_tags = client.get_run(night["mlflow_run_id"]).data.tags
    assert night_tags["chosen_architecture"] == SPEC.architecture
    assert night_tags["promotion_decision"] == "first_champion"
    assert run.data.metrics["bench_cpu_onnx_fp32_b1_p50_ms"] > 0
    assert run.data.metrics["parity_fp32_reference_max_abs_diff"] <= 1e-5  # onnx's reference runtime agrees
    assert client.list_artifacts(run.info.run_id, "onnx") == []  # kept in the run only for the dashboard's task


def test_an_unchanged_candidate_ends_skipped_and_an_unknown_code_version_always_trains(
    settings_env, toy_in_the_catalog, tmp_path, capsys
):
    from mlops_onnx import tracking
    from mlops_onnx.stages import StageSkipped

    write_points(tmp_path / "data")
    env = {"MLOPS_DATA_SOURCE": "local", "MLOPS_DATA_DIR": str(tmp_path / "data"), "MLOPS_BENCH_RUNS": "10"}

    def candidate_of(run_id: str, code_version: str) -> tuple[RunContext, dict, dict]:
        settings_env(**env, MLOPS_CODE_VERSION=code_version)
        tracking.code_version.cache_clear()
        ctx = RunContext(toy_in_the_catalog.dag_id, run_id)
        night = run_stage("validate", SPEC.name, ctx, run_stage("ingest", SPEC.name, ctx))
        (candidate,) = run_stage("candidates", SPEC.name, ctx, night)
        return ctx, night, candidate

    def through_the_gate(ctx: RunContext, night: dict, candidate: dict) -> None:
        for stage in CANDIDATE_STAGES:
            candidate = run_stage(stage, SPEC.name, ctx, candidate)
        run_stage("gate_and_register", SPEC.name, ctx, night, {"candidate_results": [candidate]})

    try:
        through_the_gate(*candidate_of("night-1", "v1"))
        _, _, unchanged = candidate_of("night-2", "v1")
        with pytest.raises(StageSkipped, match="unchanged since run night-1"):
            run_stage("train", SPEC.name, RunContext(toy_in_the_catalog.dag_id, "night-2"), unchanged)
        client = mlflow_client(settings_env().home)
        tags = client.get_run(unchanged["mlflow_run_id"]).data.tags
        assert tags["candidate_status"] == "skipped unchanged"  # final: its run is not left `running`
        assert tags["promotion_decision"] == "skipped_unchanged"

        through_the_gate(*candidate_of("night-3", "unknown"))
        ctx, _, again = candidate_of("night-4", "unknown")  # same data, config and (unknown) code as night 3
        capsys.readouterr()
        trained = run_stage("train", SPEC.name, ctx, again)
        assert trained["checkpoint"] and trained["fingerprint"]["code_version"] == "unknown"
        assert "!!! MLOPS_CODE_VERSION is 'unknown'" in capsys.readouterr().out
    finally:
        tracking.code_version.cache_clear()


def test_a_task_the_dashboard_shows_keeps_each_candidates_fp32_model_in_its_run(
    settings_env, toy_in_the_catalog, tmp_path, monkeypatch
):
    """The dashboard draws the candidates of the champion's night that were not registered from their runs."""
    import dataclasses

    import mlflow
    import onnx

    from mlops_onnx import catalog

    monkeypatch.setitem(catalog.PIPELINES, SPEC.name, dataclasses.replace(toy_in_the_catalog, served_by="dashboard"))
    write_points(tmp_path / "data")
    settings = settings_env(MLOPS_DATA_SOURCE="local", MLOPS_DATA_DIR=str(tmp_path / "data"))
    ctx = RunContext(toy_in_the_catalog.dag_id, "night-1")
    night = run_stage("validate", SPEC.name, ctx, run_stage("ingest", SPEC.name, ctx))
    (candidate,) = run_stage("candidates", SPEC.name, ctx, night)
    exported = run_stage("export", SPEC.name, ctx, run_stage("train", SPEC.name, ctx, candidate))
    client = mlflow_client(settings.home)
    assert [a.path for a in client.list_artifacts(exported["mlflow_run_id"], "onnx")] == ["onnx/model_fp32.onnx"]
    logged = mlflow.artifacts.download_artifacts(
        run_id=exported["mlflow_run_id"], artifact_path="onnx/model_fp32.onnx", dst_path=str(tmp_path / "logged")
    )
    props = {p.key: p.value for p in onnx.load(logged).metadata_props}
    assert props["model"] == SPEC.name and props["architecture"] == SPEC.architecture and props["data_hash"]


def test_the_catalog_finds_the_spec_and_rejects_a_mismatch(toy_in_the_catalog, monkeypatch):
    from mlops_onnx import catalog
    from mlops_onnx.models import load_spec

    assert load_spec(SPEC.name) is SPEC
    with pytest.raises(KeyError, match="the catalog has: .*toy_points_classifier"):
        load_spec("no_such_model")
    wrong = catalog.Pipeline(
        "other_name", "other", "other_nightly", "Other", TOY_POINTS, (catalog.Candidate("x", "toy_spec"),)
    )
    monkeypatch.setitem(catalog.PIPELINES, "other_name", wrong)
    with pytest.raises(ValueError, match="toy_spec.SPEC is 'toy_points_classifier'"):
        load_spec("other_name")

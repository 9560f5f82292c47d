"""Four nights of the Fashion-MNIST DAG through Airflow, on one state: the decisions a nightly loop must get right.

1. first night: the first champion;
2. the same data, code and config: nothing trains, nothing registers, the run says which run it repeats;
3. a changed training file: a new snapshot (an asset event), a drift report, a retrain, and a head-to-head
   against night 1's champion on the same test rows, decided by the exact McNemar test;
4. a forced retrain of a deliberately weak model (1 epoch, 300 rows): trains, registers, never takes `champion`.
"""

import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest
from conftest import HAS_SHARED_DATA, SHARED_DATA, latest_run, mlflow_client, pipeline_env, run_dag

pytestmark = pytest.mark.e2e
DAG_ID, MODEL = "fashion_mnist_nightly", "fashion_mnist_classifier"
TRAIN, TEST = "fashion-mnist_train.csv", "fashion-mnist_test.csv"
SKIPPED_AFTER_TRAIN = {
    *(f"candidate.{t}" for t in ("train", "export", "quantize", "parity", "benchmark_cpu", "benchmark_gpu")),
    "gate_and_register",
}


def night_runs(client) -> tuple:
    """The newest night's MLflow run (data, drift, decision) and its CNN candidate's run (training, decision)."""
    return latest_run(client, MODEL), latest_run(client, MODEL, architecture="cnn")


def write_data(folder, train_rows: slice):
    """A small Kaggle-layout copy: the training rows `train_rows` and the first 600 test rows."""
    data = folder / "fashionmnist"
    data.mkdir(parents=True, exist_ok=True)
    if HAS_SHARED_DATA:
        source = SHARED_DATA / "fashionmnist"
    else:
        from mlops_onnx.sources.synthetic import write_fashion

        source = folder / "synthetic"
        write_fashion(source, np.random.default_rng(0), (4000, 600))
    for name, rows in ((TRAIN, train_rows), (TEST, slice(0, 600))):
        lines = (source / name).read_text().splitlines()
        (data / name).write_text("\n".join([lines[0], *lines[1:][rows]]) + "\n")
    return folder


def task_states(home, run_id: str) -> dict[str, str]:
    db = sqlite3.connect(home / "airflow" / "airflow.db")
    rows = db.execute("select task_id, state from task_instance where run_id = ?", (run_id,)).fetchall()
    db.close()
    return dict(rows)


def asset_events(home) -> list[str]:
    db = sqlite3.connect(home / "airflow" / "airflow.db")
    rows = db.execute(
        "select a.name, e.extra from asset_event e join asset a on a.id = e.asset_id order by e.id"
    ).fetchall()
    db.close()
    return [f"{name} {extra}" for name, extra in rows]


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """The four nights, in order; each test reads what they left."""
    root = tmp_path_factory.mktemp("nights")
    home, data = root / "home", root / "data"
    env = pipeline_env(
        home,
        data_dir=write_data(data, slice(0, 1500)),
        MLOPS_MAX_TRAIN_ROWS="1500",
        MLOPS_EPOCHS="2",
        MLOPS_BENCH_RUNS="5",
    )
    client = mlflow_client(home)
    runs = {}
    for night in (1, 2):
        done = run_dag(DAG_ID, env)
        assert done.returncode == 0, done.stdout[-3000:]
        (runs[f"night_{night}"], runs[night]), runs[f"events_{night}"] = night_runs(client), asset_events(home)
    write_data(data, slice(1500, 3000))  # new training images: a new snapshot
    done = run_dag(DAG_ID, env)
    assert done.returncode == 0, done.stdout[-3000:]
    (runs["night_3"], runs[3]), runs["events_3"] = night_runs(client), asset_events(home)
    runs["champion_after_3"] = client.get_model_version_by_alias(MODEL, "champion")
    weak = {**env, "MLOPS_EPOCHS": "1", "MLOPS_MAX_TRAIN_ROWS": "300", "MLOPS_GATE_FASHION_MNIST_CLASSIFIER": "0.1"}
    done = run_dag(DAG_ID, weak, conf={"force_retrain": True})
    assert done.returncode == 0, done.stdout[-3000:]
    runs["night_4"], runs[4] = night_runs(client)
    yield home, client, runs
    shutil.rmtree(root, ignore_errors=True)


def test_first_night_registers_the_first_champion_with_its_fingerprint(nights):
    home, client, runs = nights
    tags = runs[1].data.tags
    assert tags["promotion_decision"] == "first_champion" and tags["registered_version"] == "1"
    assert tags["promotion_reason"].startswith("First champion: no champion yet and the gate passed")
    version = client.get_model_version(MODEL, "1")
    for key in ("data_hash", "code_version", "config_hash", "fingerprint"):
        assert version.tags[key] == tags[key] and len(tags[key]) >= 12, key
    assert tags["forced"] == "false" and version.description.startswith("First champion")
    [event] = runs["events_1"]
    assert event.startswith("fashionmnist_snapshot") and tags["data_hash"] in event


def test_an_unchanged_night_trains_nothing_and_says_which_run_it_repeats(nights):
    home, client, runs = nights
    first, second = runs[1].data.tags, runs[2].data.tags
    assert second["fingerprint"] == first["fingerprint"]
    assert second["promotion_decision"] == "skipped_unchanged"
    assert second["promotion_reason"].startswith(f"unchanged since run {first['airflow_run_id']}")
    assert "version 1" in second["promotion_reason"] and "registered_version" not in second
    states = task_states(home, second["airflow_run_id"])
    assert {task: states[task] for task in SKIPPED_AFTER_TRAIN} == dict.fromkeys(SKIPPED_AFTER_TRAIN, "skipped")
    assert states["ingest"] == states["validate"] == states["candidates"] == states["prune"] == "success"
    assert runs["night_2"].data.tags["promotion_decision"] == "skipped_unchanged"
    assert runs[2].data.tags["candidate_status"] == "skipped unchanged"  # the candidate's run ends, not `running`
    assert runs[2].info.status == "FINISHED" and runs["night_2"].info.status == "FINISHED"  # in the MLflow UI too
    assert "train_loss" not in runs[2].data.metrics
    assert runs["events_2"] == runs["events_1"]  # the same snapshot: no event


def test_a_changed_snapshot_retrains_and_meets_the_champion_on_the_same_rows(nights, tmp_path):
    import mlflow

    from mlops_onnx.models.fashion import image_ids, load_split
    from mlops_onnx.snapshots import SnapshotStore

    home, client, runs = nights
    third = runs[3]
    tags, metrics = third.data.tags, third.data.metrics
    assert tags["data_hash"] != runs[1].data.tags["data_hash"]
    assert len(runs["events_3"]) == 2 and tags["data_hash"] in runs["events_3"][1]
    night = runs["night_3"]
    assert tags["drift_status"] == night.data.tags["drift_status"] == "reported"
    assert 0 <= night.data.metrics["drift_share"] <= 1
    assert "reports/drift_report.html" in {a.path for a in client.list_artifacts(night.info.run_id, "reports")}

    assert tags["compare_champion_version"] == "1" and tags["compare_test"] == "mcnemar_exact"
    assert tags["compare_alternative"] == "candidate test_accuracy > champion"  # one-sided, as claimed
    table = pd.read_csv(
        mlflow.artifacts.download_artifacts(
            run_id=third.info.run_id, artifact_path="reports/head_to_head.csv", dst_path=str(tmp_path)
        )
    )
    snapshot = SnapshotStore(f"file://{home}/snapshots", tmp_path / "cache").get("fashionmnist", tags["data_hash"])
    images, labels = load_split(snapshot, TEST, 600)
    assert list(table["row_id"]) == list(image_ids(images)) and list(table["target"]) == list(labels)
    assert metrics["compare_rows"] == 600
    assert metrics["compare_candidate_test_accuracy"] == pytest.approx(table["candidate_correct"].mean())
    assert metrics["compare_champion_test_accuracy"] == pytest.approx(table["champion_correct"].mean())
    won = (
        metrics["compare_candidate_test_accuracy"] > metrics["compare_champion_test_accuracy"]
        and metrics["compare_p_value"] < 0.05
    )
    assert tags["promotion_decision"] == ("promoted" if won else "kept_champion")
    assert str(runs["champion_after_3"].version) == ("2" if won else "1")
    first = client.get_model_version(MODEL, "1")
    assert first.tags.get("displaced_by_version") == ("2" if won else None)  # a displaced champion says so
    assert f"p={metrics['compare_p_value']:.3g}" in tags["promotion_reason"]
    assert client.get_model_version(MODEL, "2").description.startswith(tags["promotion_reason"])
    assert night.data.tags["promotion_reason"] == tags["promotion_reason"]  # the night says it too
    assert night.data.tags["chosen_architecture"] == "cnn"


def test_a_forced_weak_retrain_never_takes_the_champion(nights):
    home, client, runs = nights
    tags, metrics = runs[4].data.tags, runs[4].data.metrics
    assert tags["forced"] == "true" and metrics["train_loss"] > 0
    # a capped-rows run carries its cap in its params and its config hash
    assert (runs[4].data.params["max_train_rows"], runs[3].data.params["max_train_rows"]) == ("300", "1500")
    assert tags["config_hash"] != runs[3].data.tags["config_hash"]
    assert tags["promotion_decision"] == "kept_champion" and tags["registered_alias"] == "challenger"
    assert metrics["compare_candidate_test_accuracy"] < metrics["compare_champion_test_accuracy"]
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.version == runs["champion_after_3"].version
    assert tags["compare_champion_version"] == str(champion.version)

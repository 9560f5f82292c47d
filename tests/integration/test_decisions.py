"""Champion decisions on a real MLflow registry and real ONNX Runtime sessions, with models whose answers
are known row by row: an "oracle" reads the label hidden in pixel 1, and a flawed copy is wrong exactly
on the rows marked hard (pixel 2 = 255). So the McNemar table of every comparison is known in advance."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import mlflow_client

from mlops_onnx import registry, tracking
from mlops_onnx.models.fashion import SPEC, TEST_FILE, TRAIN_FILE
from mlops_onnx.tracking import RunContext

pytestmark = pytest.mark.slow  # real servers, registries and trained models: make test, not make test-fast

PIXELS = [f"pixel{i}" for i in range(1, 785)]


def oracle_onnx(path, flawed: bool):
    """logits[k] = -|pixel1 / 10 + shift - k|: argmax is the hidden label, or label + 1 on hard rows if flawed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    consts = {
        "shape": np.array([-1, 784], np.int64),
        "i1": np.array([0], np.int64),
        "i2": np.array([1], np.int64),
        "ten": np.array(10, np.float32),
        "full": np.array(255, np.float32),
        "classes": np.arange(10, dtype=np.float32)[None, :],
        "flaw": np.array(float(flawed), np.float32),
    }
    nodes = [
        helper.make_node("Reshape", ["image", "shape"], ["flat"]),
        helper.make_node("Gather", ["flat", "i1"], ["p1"], axis=1),
        helper.make_node("Gather", ["flat", "i2"], ["p2"], axis=1),
        helper.make_node("Div", ["p1", "ten"], ["label"]),
        helper.make_node("Div", ["p2", "full"], ["p2_scaled"]),
        helper.make_node("Floor", ["p2_scaled"], ["hard"]),
        helper.make_node("Mul", ["hard", "flaw"], ["shift"]),
        helper.make_node("Add", ["label", "shift"], ["shifted"]),
        helper.make_node("Sub", ["shifted", "classes"], ["distance"]),
        helper.make_node("Abs", ["distance"], ["absolute"]),
        helper.make_node("Neg", ["absolute"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "oracle",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_split(path, labels: np.ndarray, hard: np.ndarray, rng) -> None:
    pixels = rng.integers(0, 100, (len(labels), 784))
    pixels[:, 0] = labels * 10
    pixels[:, 1] = np.where(hard, 255, 0)
    frame = pd.DataFrame(pixels, columns=PIXELS)
    frame.insert(0, "label", labels)
    frame.to_csv(path, index=False)


@pytest.fixture
def night(settings_env, tmp_path):
    """`make(run_id, flawed)`: a DAG-run state that passed every check, over a snapshot whose test file has
    `hard_rows` hard rows, with an oracle (or flawed) ONNX model and its MLflow run."""
    from mlops_onnx.snapshots import SnapshotStore

    settings = settings_env(MLOPS_DATA_SOURCE="synthetic", MLOPS_MAX_TEST_ROWS="600")
    store = SnapshotStore(settings.snapshots_dir)

    def snapshot(hard_rows: int) -> str:
        rng = np.random.default_rng(hard_rows)
        with store.staging("fashionmnist") as staging:
            write_split(staging / TRAIN_FILE, rng.integers(0, 10, 50), np.zeros(50, bool), rng)
            write_split(staging / TEST_FILE, rng.integers(0, 9, 600), np.arange(600) < hard_rows, rng)
            return store.commit("fashionmnist", staging, source="test").content_hash

    def make(run_id: str, flawed: bool, data: str) -> tuple[RunContext, dict]:
        ctx = RunContext("fashion_mnist_nightly", run_id)
        workdir = tmp_path / run_id
        (workdir / "reports").mkdir(parents=True)
        state = {
            "validation": "passed",
            "parity": {"fp32": True},
            "metrics": {"test_accuracy": 0.9},
            "onnx_fp32": str(oracle_onnx(workdir / "model_fp32.onnx", flawed)),
            "snapshot": data,
            "data_source": "synthetic",
            "workdir": str(workdir),
            "passing_variants": {},
            "preprocessing": [],
            "mlflow_run_id": tracking.find_or_create_run(SPEC.name, ctx, settings),
        }
        return ctx, state

    return settings, snapshot, make


def register(settings, ctx, state) -> dict:
    return registry.gate_and_register(SPEC, ctx, state, settings)


def test_the_first_model_through_the_gate_becomes_champion(night):
    settings, snapshot, make = night
    result = register(settings, *make("n1", flawed=True, data=snapshot(60)))
    assert result["promotion_decision"] == "first_champion" and result["aliases"] == ["champion"]
    client = mlflow_client(settings.home)
    assert client.get_model_version(SPEC.name, "1").description.startswith("First champion: no champion yet")


def test_a_clearly_better_model_is_promoted_on_the_same_rows(night):
    settings, snapshot, make = night
    data = snapshot(60)  # the flawed champion is wrong on 60 of 600 rows, the candidate on none
    register(settings, *make("n1", flawed=True, data=data))
    ctx, state = make("n2", flawed=False, data=data)
    result = register(settings, ctx, state)
    assert result["promotion_decision"] == "promoted" and result["aliases"] == ["champion"]
    client = mlflow_client(settings.home)
    run = client.get_run(state["mlflow_run_id"])
    assert run.data.metrics["compare_rows"] == 600
    assert run.data.metrics["compare_candidate_test_accuracy"] == 1.0
    assert run.data.metrics["compare_champion_test_accuracy"] == pytest.approx(540 / 600)
    assert run.data.metrics["compare_p_value"] == pytest.approx(0.5**60)  # b = 60, c = 0: P(X >= 60), one-sided
    assert run.data.tags["compare_champion_version"] == "1" and run.data.tags["promotion_decision"] == "promoted"
    assert run.data.tags["compare_test"] == "mcnemar_exact"
    assert run.data.tags["compare_alternative"] == "candidate test_accuracy > champion"
    assert run.data.tags["promotion_reason"].startswith("Promoted: test_accuracy 1.0000 vs champion v1 0.9000")
    version = client.get_model_version(SPEC.name, "2")
    assert version.tags["promotion_decision"] == "promoted" and version.tags["compare_test"] == "mcnemar_exact"
    assert version.tags["compare_alternative"] == "candidate test_accuracy > champion"
    assert version.description.startswith(run.data.tags["promotion_reason"])
    assert str(client.get_model_version_by_alias(SPEC.name, "champion").version) == "2"
    # the version that lost `champion` says so and why, and keeps why it had become champion
    displaced = client.get_model_version(SPEC.name, "1")
    assert displaced.tags["displaced_by_version"] == "2"
    assert displaced.tags["displaced_reason"] == run.data.tags["promotion_reason"]
    assert displaced.description.startswith(f"No longer champion: v2 took it. {run.data.tags['promotion_reason']}")
    assert "Earlier: First champion: no champion yet" in displaced.description
    assert displaced.description.endswith("Alias on registration: @champion.")
    assert displaced.tags["promotion_decision"] == "first_champion"  # its own decision stays as it was
    table = pd.read_csv(tmp := (state["workdir"] + "/reports/head_to_head.csv"))
    assert len(table) == 600 and table["candidate_correct"].all() and (~table["champion_correct"]).sum() == 60
    artifacts = {a.path for folder in ("reports", "plots") for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"reports/head_to_head.csv", "plots/head_to_head.png"} <= artifacts, tmp


def test_a_better_score_within_noise_does_not_move_the_champion(night):
    settings, snapshot, make = night
    data = snapshot(3)  # 3 rows apart: accuracy 1.000 vs 0.995, one-sided p = 0.5**3
    register(settings, *make("n1", flawed=True, data=data))
    ctx, state = make("n2", flawed=False, data=data)
    result = register(settings, ctx, state)
    assert result["promotion_decision"] == "kept_champion" and result["aliases"] == ["challenger"]
    tags = mlflow_client(settings.home).get_run(state["mlflow_run_id"]).data.tags
    assert tags["promotion_reason"].startswith("Champion kept: better but not significantly")
    assert "one-sided p=0.125 for candidate test_accuracy > champion" in tags["promotion_reason"]
    client = mlflow_client(settings.home)
    assert str(client.get_model_version_by_alias(SPEC.name, "champion").version) == "1"
    assert "displaced_by_version" not in client.get_model_version(SPEC.name, "1").tags  # it is still champion


def test_a_worse_model_stays_challenger(night):
    settings, snapshot, make = night
    data = snapshot(60)
    register(settings, *make("n1", flawed=False, data=data))
    result = register(settings, *make("n2", flawed=True, data=data))
    assert result["promotion_decision"] == "kept_champion" and result["aliases"] == ["challenger"]
    client = mlflow_client(settings.home)
    assert client.get_model_version(SPEC.name, "2").description.startswith("Champion kept: not better")


def test_the_alias_moves_only_after_comparing_with_the_champion_of_that_moment(night, monkeypatch):
    """Compare-and-set: a champion that changed while this run compared is compared again before the alias
    moves. Here v2 (oracle) takes `champion` while v3 (flawed) is being compared with v1 (flawed, equal to it)."""
    settings, snapshot, make = night
    data = snapshot(60)
    register(settings, *make("n1", flawed=True, data=data))
    ctx2, state2 = make("n2", flawed=False, data=data)
    ctx3, state3 = make("n3", flawed=True, data=data)
    compare = registry.head_to_head
    calls = []

    def meanwhile(spec, client, champion, state, settings):
        calls.append(str(champion.version))
        if len(calls) == 1:  # while n3 compares with v1, n2 registers and wins
            monkeypatch.setattr(registry, "head_to_head", compare)
            assert register(settings, ctx2, state2)["aliases"] == ["champion"]
            monkeypatch.setattr(registry, "head_to_head", meanwhile)
        return compare(spec, client, champion, state, settings)

    monkeypatch.setattr(registry, "head_to_head", meanwhile)
    result = register(settings, ctx3, state3)
    assert calls == ["1", "2"]  # compared with v1, then again with v2, the champion when its alias was set
    assert result["promotion_decision"] == "kept_champion" and result["aliases"] == ["challenger"]
    client = mlflow_client(settings.home)
    assert str(client.get_model_version_by_alias(SPEC.name, "champion").version) == "2"
    version = client.get_model_version(SPEC.name, "3")
    assert "champion v2" in version.tags["promotion_reason"]
    p_value = client.get_run(state3["mlflow_run_id"]).data.metrics["compare_p_value"]  # the latest comparison's
    assert version.tags["compare_p_value"] == f"{p_value:.6g}"


def test_a_champion_that_cannot_run_on_tonights_rows_is_kept_with_the_reason(night):
    settings, snapshot, make = night
    register(settings, *make("n1", flawed=True, data=snapshot(60)))
    ctx, state = make("n2", flawed=False, data=snapshot(60))
    state["snapshot"] = "f" * 64  # tonight's rows cannot be read: nothing to compare on
    result = register(settings, ctx, state)
    assert result["promotion_decision"] == "kept_champion"
    reason = mlflow_client(settings.home).get_model_version(SPEC.name, "2").tags["promotion_reason"]
    assert reason.startswith("Champion kept: champion v1 could not be run on tonight's test rows")
    assert json.loads(json.dumps(reason))  # one sentence, stored as is


@pytest.mark.parametrize(
    ("tags", "outcome"),
    [
        ({"registered_version": "3", "promotion_decision": "first_champion"}, "version 3, first_champion"),
        (
            {
                "promotion_decision": "not_chosen",
                "promotion_reason": "Not chosen: test_mase 0.9955, behind transformer's 0.9946 on the same test rows.",
            },
            "Not chosen: test_mase 0.9955, behind transformer's 0.9946 on the same test rows",
        ),
        (
            {"promotion_decision": "rejected", "gate_reason": "test_accuracy 0.41 < 0.85"},
            "rejected by the gate (test_accuracy 0.41 < 0.85)",
        ),
    ],
)
def test_an_unchanged_night_says_what_became_of_the_run_it_repeats(settings_env, tmp_path, tags, outcome):
    from mlops_onnx import fingerprint

    client = mlflow_client(tmp_path)
    run = client.create_run(client.create_experiment("m"), tags={"airflow_run_id": "scheduled__1", **tags})
    reason = fingerprint.unchanged_reason(client.get_run(run.info.run_id))
    assert reason.startswith("unchanged since run scheduled__1 (") and reason.endswith(f"): {outcome}"), reason

"""MLOPS_PROMOTION_APPROVAL on a real MLflow registry, with the oracle models of `test_decisions`, whose
McNemar tables are known in advance: which moves wait for a human, what the request shows, and what each
answer (approve, reject, no answer, an approval that comes after the champion moved) does to `champion`.
The same flow through Airflow's REST API and scheduler: tests/e2e/test_promotion_approval.py."""

import pytest
from conftest import mlflow_client
from test_decisions import night, register  # noqa: F401 (night: the fixture)

from mlops_onnx import approval
from mlops_onnx.models.fashion import SPEC

pytestmark = pytest.mark.slow

ALICE = {"id": "alice", "name": "alice"}


def close_call(settings, snapshot, make) -> tuple[dict, dict]:
    """v1 (flawed) is champion; v2 (the oracle) is better on 3 rows of 600: one-sided McNemar p = 0.125."""
    data = snapshot(3)
    register(settings, *make("n1", flawed=True, data=data))
    ctx, state = make("n2", flawed=False, data=data)
    return register(settings, ctx, state), state


def aliases(settings) -> dict[str, str]:
    client = mlflow_client(settings.home)
    return {a: str(client.get_model_version_by_alias(SPEC.name, a).version) for a in ("champion", "challenger")}


def test_a_close_call_waits_as_challenger_with_the_numbers_in_the_request(night, settings_env):  # noqa: F811
    settings, snapshot, make = night
    settings = settings_env(MLOPS_PROMOTION_APPROVAL="close")
    result, state = close_call(settings, snapshot, make)
    assert result["promotion_decision"] == "awaiting_approval" and result["aliases"] == ["challenger"]
    assert aliases(settings) == {"champion": "1", "challenger": "2"}
    version = mlflow_client(settings.home).get_model_version(SPEC.name, "2")
    assert version.tags["promotion_reason"].startswith(
        "Awaiting approval in Airflow (MLOPS_PROMOTION_APPROVAL=close): better but not significantly, "
        "test_accuracy 1.0000 vs champion v1 0.9950 on the same 600 test rows (mcnemar_exact, one-sided p=0.125"
    )
    asked = approval.request(SPEC.name, "2", state["mlflow_run_id"], settings)
    assert asked["champion_version"] == "1" and asked["why"].startswith("better but not significantly")
    assert asked["subject"] == f"{SPEC.name}: make v2 champion? (champion: v1)"
    body = asked["body"]
    assert "| test_accuracy | 1.0000 | 0.9950 |" in body and "on the same 600 test rows" in body
    assert 'one-sided p = 0.125 for "candidate test_accuracy > champion" (alpha 0.05)' in body
    assert f"get-artifact?path=plots/head_to_head.png&run_uuid={state['mlflow_run_id']}" in body
    assert "within 12 h: the champion stays" in body


def test_an_approval_promotes_and_names_the_approver(night, settings_env):  # noqa: F811
    settings, snapshot, make = night
    settings = settings_env(MLOPS_PROMOTION_APPROVAL="close")
    _, state = close_call(settings, snapshot, make)
    asked = approval.request(SPEC.name, "2", state["mlflow_run_id"], settings)
    answered = approval.answer(asked, {"chosen_options": ["Approve"], "responded_by_user": ALICE}, settings)
    assert answered.decision == "promoted" and answered.approver == "alice"
    assert answered.reason.startswith("Promoted on approval by alice in Airflow: better but not significantly")
    client = mlflow_client(settings.home)
    assert str(client.get_model_version_by_alias(SPEC.name, "champion").version) == "2"
    with pytest.raises(Exception, match="alias"):  # a champion is nobody's challenger
        client.get_model_version_by_alias(SPEC.name, "challenger")
    version = client.get_model_version(SPEC.name, "2")
    assert version.tags["promotion_decision"] == "promoted" and version.tags["compare_test"] == "mcnemar_exact"
    assert version.description == f"{answered.reason} Alias after the approval request: @champion."
    assert client.get_model_version(SPEC.name, "1").tags["displaced_by_version"] == "2"
    night_tags = client.get_run(state["mlflow_run_id"]).data.tags
    assert night_tags["approved_by"] == "alice" and night_tags["promotion_decision"] == "promoted"


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ({"chosen_options": ["Reject"], "responded_by_user": ALICE}, "Champion kept: rejected by alice in Airflow"),
        (  # the scheduler's timeout sweep answers the default, Reject, with nobody as the responder
            {"chosen_options": ["Reject"], "responded_by_user": None},
            "Champion kept: no answer to the approval request within 12 h (MLOPS_APPROVAL_TIMEOUT_HOURS)",
        ),
    ],
)
def test_a_rejection_or_no_answer_keeps_the_champion(night, settings_env, response, reason):  # noqa: F811
    settings, snapshot, make = night
    settings = settings_env(MLOPS_PROMOTION_APPROVAL="close")
    _, state = close_call(settings, snapshot, make)
    answered = approval.answer(approval.request(SPEC.name, "2", state["mlflow_run_id"], settings), response, settings)
    assert answered.decision == "kept_champion" and answered.reason.startswith(reason)
    assert aliases(settings) == {"champion": "1", "challenger": "2"}
    assert mlflow_client(settings.home).get_model_version(SPEC.name, "2").tags["promotion_decision"] == "kept_champion"


def test_an_approval_after_the_champion_moved_does_not_promote(night, settings_env):  # noqa: F811
    """The human approved a comparison with v1; a rollback or another night moved `champion` meanwhile."""
    settings, snapshot, make = night
    settings = settings_env(MLOPS_PROMOTION_APPROVAL="close")
    _, state = close_call(settings, snapshot, make)
    asked = approval.request(SPEC.name, "2", state["mlflow_run_id"], settings)
    register(settings, *make("n3", flawed=True, data=state["snapshot"]))  # v3, challenger
    mlflow_client(settings.home).set_registered_model_alias(SPEC.name, "champion", "3")
    answered = approval.answer(asked, {"chosen_options": ["Approve"], "responded_by_user": ALICE}, settings)
    assert answered.decision == "kept_champion"
    assert answered.reason.startswith("Champion kept: approved by alice, but the champion moved from v1 to v3")
    assert aliases(settings)["champion"] == "3"


def test_never_and_always(night, settings_env):  # noqa: F811
    """`never` (the default) decides by the test alone; `always` asks for a clear win and a first champion too."""
    settings, snapshot, make = night
    assert settings.promotion_approval == "never"
    data = snapshot(60)  # a clear win: p = 0.5**60
    assert register(settings, *make("n1", flawed=True, data=data))["promotion_decision"] == "first_champion"
    settings = settings_env(MLOPS_PROMOTION_APPROVAL="always")
    result = register(settings, *make("n2", flawed=False, data=data))
    assert result["promotion_decision"] == "awaiting_approval" and aliases(settings)["champion"] == "1"
    reason = mlflow_client(settings.home).get_model_version(SPEC.name, "2").tags["promotion_reason"]
    assert reason.startswith("Awaiting approval in Airflow (MLOPS_PROMOTION_APPROVAL=always): test_accuracy 1.0000")

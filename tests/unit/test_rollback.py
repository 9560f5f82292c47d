"""`python -m mlops_onnx.cli rollback`: the alias moves back through the compare-and-set, both versions and a
run record who, why and from where, and the running API serves the rolled-back version."""

import time

from conftest import mlflow_client
from test_serving import NAME, api, register  # noqa: F401 (the fixture and the registry helper)

from mlops_onnx import champion, cli


def served_version(client, timeout: float = 10.0, want: str | None = None) -> str:
    """The version /predict answers with, once it is `want` (the API reads the alias on its reload signal)."""
    deadline = time.monotonic() + timeout
    while True:
        version = client.post("/predict", json={"text": "markets rose"}).json()["predictions"][0]["version"]
        if version == want or want is None or time.monotonic() > deadline:
            return version
        time.sleep(0.1)


def test_rollback_moves_the_champion_records_why_and_the_api_serves_it(api, tmp_path, capsys):  # noqa: F811
    home, start = api
    register(home, tmp_path / "v1", scale=0.5)
    register(home, tmp_path / "v2", scale=-3.0)  # v2 took champion
    server = start()
    assert served_version(server) == "2"

    assert cli.main(["rollback", NAME, "--to", "1", "--reason", "v2 flags every wire story", "--by", "ops"]) == 0
    assert "rolled back from v2 to v1 by ops: v2 flags every wire story" in capsys.readouterr().out
    registry = mlflow_client(home)
    assert str(registry.get_model_version_by_alias(NAME, "champion").version) == "1"
    back, left = registry.get_model_version(NAME, "1"), registry.get_model_version(NAME, "2")
    assert back.tags["promotion_decision"] == "rolled_back" and back.tags["rollback_from_version"] == "2"
    assert (back.tags["rollback_by"], back.tags["rollback_reason"]) == ("ops", "v2 flags every wire story")
    assert back.description.startswith("Rolled back from v2 by ops: v2 flags every wire story.")
    assert left.tags["displaced_by_version"] == "1" and "by ops" in left.tags["displaced_reason"]
    assert left.description.startswith("No longer champion: v1 took it.")
    runs = registry.search_runs(
        [registry.get_experiment_by_name(NAME).experiment_id], "tags.run_kind = 'rollback'", max_results=5
    )
    assert len(runs) == 1 and runs[0].data.params["reason"] == "v2 flags every wire story"
    assert (runs[0].data.tags["rollback_from_version"], runs[0].data.tags["rollback_to_version"]) == ("2", "1")
    assert runs[0].info.status == "FINISHED" and runs[0].data.tags["mlflow.user"] == "ops"
    assert served_version(server, want="1") == "1"  # the API read the alias again on the rollback's signal

    # no --to: back to the version the champion displaced most recently
    assert cli.main(["rollback", NAME, "--reason", "the wire-story bug was in the feed"]) == 0
    assert str(registry.get_model_version_by_alias(NAME, "champion").version) == "2"
    assert served_version(server, want="2") == "2"


def test_a_rollback_that_cannot_be_done_moves_nothing(api, tmp_path, capsys):  # noqa: F811
    home, _ = api
    assert cli.main(["rollback", NAME, "--reason", "x"]) == 1
    assert "has no champion to roll back" in capsys.readouterr().err
    register(home, tmp_path / "v1", scale=0.5)
    register(home, tmp_path / "v2", scale=-3.0)
    for argv, why in (
        (["--to", "2", "--reason", "x"], "v2 is already champion"),
        (["--to", "9", "--reason", "x"], "has no version 9"),
        (["--reason", "x"], "v2 displaced no earlier champion: name the version with --to"),
        (["--to", "1", "--reason", "  "], "needs a --reason"),
    ):
        assert cli.main(["rollback", NAME, *argv]) == 1
        assert why in capsys.readouterr().err
    registry = mlflow_client(home)
    assert str(registry.get_model_version_by_alias(NAME, "champion").version) == "2"
    assert "displaced_by_version" not in registry.get_model_version(NAME, "1").tags


def test_the_compare_and_set_refuses_when_the_champion_moved(api, tmp_path):  # noqa: F811
    home, _ = api
    register(home, tmp_path / "v1", scale=0.5)
    registry = mlflow_client(home)
    read = champion.current_champion(registry, NAME)
    register(home, tmp_path / "v2", scale=-3.0)  # the champion moves after `read`
    assert champion.compare_and_set_champion(registry, NAME, read, "1") is False
    assert str(registry.get_model_version_by_alias(NAME, "champion").version) == "2"
    assert champion.compare_and_set_champion(registry, NAME, champion.current_champion(registry, NAME), "1")
    assert str(registry.get_model_version_by_alias(NAME, "champion").version) == "1"

"""The fake-news API against a real ONNX model in a real (temporary) MLflow registry."""

import secrets
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import mlflow_client
from fastapi.testclient import TestClient
from serving_support import METRICS, NAME, TEXTS, register, tiny_classifier  # noqa: F401 (re-exported)

from mlops_onnx import registry
from mlops_onnx.serving.app import ModelHolder, create_app
from mlops_onnx.settings import Settings


@pytest.fixture
def api(settings_env):
    """(MLOPS_HOME, start): start(**settings) runs the app in-process on the settings of that moment."""
    settings = settings_env(MLOPS_SERVE_POLL_SECONDS="0")
    clients = []

    def start(**values: str) -> TestClient:
        client = TestClient(create_app(ModelHolder(NAME, settings_env(MLOPS_SERVE_POLL_SECONDS="0", **values))))
        client.__enter__()
        clients.append(client)
        return client

    yield settings.home, start
    for client in clients:
        client.__exit__(None, None, None)


def test_no_champion_is_503_with_a_clear_message(api):
    _, start = api
    client = start()
    response = client.post("/predict", json={"title": "x", "text": "some text"})
    assert response.status_code == 503 and "no fake_news_classifier@champion" in response.json()["detail"]
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json() == {"status": "unavailable", "version": None, "reason": "no_model_at_alias"}


def test_predicts_one_article_and_a_batch(api, tmp_path):
    home, start = api
    version = register(home, tmp_path, scale=0.5)
    client = start()
    one = client.post("/predict", json={"title": "Senator", "text": "the bill passed"}).json()["predictions"]
    assert len(one) == 1 and one[0]["model"] == NAME and one[0]["version"] == version
    assert one[0]["label"] in {"fake", "real"} and 0.0 <= one[0]["probability_fake"] <= 1.0
    batch = client.post("/predict", json={"articles": [{"title": "", "text": t} for t in TEXTS]}).json()
    assert len(batch["predictions"]) == 3
    info = client.get("/model").json()
    assert info["version"] == version and info["data_hash"] == "ab" * 32 and info["metrics"]["test_f1"] == 0.95
    assert info["serving_variant"] == "int8_dynamic"
    assert client.get("/health").json() == {"status": "ok", "version": version, "reason": None}


def test_a_version_is_served_from_its_model_directory_alone(api, tmp_path):
    """The helper logs nothing into the run: serving and the champion comparison read the model directory."""
    import mlflow

    home, start = api
    register(home, tmp_path, scale=0.5)
    client = mlflow_client(home)
    version = client.get_model_version_by_alias(NAME, "champion")
    assert client.list_artifacts(version.run_id) == []
    model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1", dst_path=str(tmp_path / "dir")))
    files = {str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file()}
    assert {"preprocessing/tokenizer.json", "serving/model_int8_dynamic.opt.onnx", "serving/serving.json"} <= files
    preprocessing = registry.version_preprocessing(client, version, tmp_path / "champion")
    assert preprocessing == tmp_path / "champion" / "model" / "preprocessing"
    assert (preprocessing / "tokenizer.json").is_file()
    assert start().post("/predict", json={"text": "markets rose"}).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"title": "t", "text": ""}, "empty"),
        ({"title": "t", "text": "   \n\t"}, "whitespace"),
        ({"title": "t", "text": 42}, "string"),
        ({"title": "t"}, "text"),
        ({"articles": []}, "empty"),
        ({"articles": [{"text": "ok"}] * (Settings.serve_max_items + 1)}, str(Settings.serve_max_items)),
        ({"articles": [{"text": "ok", "subject": "politicsNews"}]}, "extra"),
    ],
)
def test_bad_input_is_422_with_a_message(api, tmp_path, body, message):
    home, start = api
    register(home, tmp_path, scale=0.5)
    response = start().post("/predict", json=body)
    assert response.status_code == 422 and message in str(response.json()["detail"])


def test_oversized_body_is_rejected(api, tmp_path):
    home, start = api
    register(home, tmp_path, scale=0.5)
    response = start().post(
        "/predict", content=b'{"text": "' + b"a" * (2 << 20) + b'"}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413 and "exceeds" in response.json()["detail"]


RELOAD_TOKEN = secrets.token_urlsafe(16)


def test_hot_reload_when_the_champion_moves(api, tmp_path, settings_env):
    home, start = api
    register(home, tmp_path / "v1", scale=0.5)
    client = start(MLOPS_SERVE_RELOAD_TOKEN=RELOAD_TOKEN)
    before = client.post("/predict", json={"text": "markets rose"}).json()["predictions"][0]
    register(home, tmp_path / "v2", scale=-3.0)
    reloaded = client.post("/reload", headers={"Authorization": f"Bearer {RELOAD_TOKEN}"})
    assert reloaded.json() == {"reloaded": True, "version": "2", "detail": None}
    after = client.post("/predict", json={"text": "markets rose"}).json()["predictions"][0]
    assert (before["version"], after["version"]) == ("1", "2")
    assert not np.isclose(before["probability_fake"], after["probability_fake"])


def test_reload_needs_the_token_and_is_off_without_one(api, tmp_path, settings_env):
    home, start = api
    register(home, tmp_path / "v1", scale=0.5)
    client = start()
    register(home, tmp_path / "v2", scale=-3.0)
    off = client.post("/reload")
    assert off.status_code == 404 and "MLOPS_SERVE_RELOAD_TOKEN" in off.json()["detail"]

    client = start(MLOPS_SERVE_RELOAD_TOKEN=RELOAD_TOKEN)  # read once, when the app is created
    assert client.get("/health").json()["version"] == "2"
    register(home, tmp_path / "v3", scale=2.0)
    missing = client.post("/reload")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert client.post("/reload", headers={"Authorization": RELOAD_TOKEN}).status_code == 401  # no scheme
    assert client.post("/reload", headers={"Authorization": "Bearer wrong-token"}).status_code == 403
    assert client.get("/health").json()["version"] == "2"  # none of them reloaded
    accepted = client.post("/reload", headers={"Authorization": f"Bearer {RELOAD_TOKEN}"})
    assert accepted.status_code == 200 and accepted.json()["version"] == "3"


def test_the_lineage_and_error_words_are_only_for_the_token(api, tmp_path):
    """`/health` and `/model` are public: no commit, Airflow run, path or exception text; `/status` has them
    behind the operator token (and is off without one)."""
    home, start = api
    version = register(home, tmp_path / "v1", scale=0.5)
    registry = mlflow_client(home)
    for key, value in {"git_commit": "0123abc", "airflow_run_id": "scheduled__2026-12-07"}.items():
        registry.set_model_version_tag(NAME, version, key, value)
    assert start().get("/status").status_code == 404
    client = start(MLOPS_SERVE_RELOAD_TOKEN=RELOAD_TOKEN)
    public = client.get("/health").text + client.get("/model").text
    assert "0123abc" not in public and "scheduled__" not in public and str(tmp_path) not in public
    assert client.get("/status").status_code == 401
    assert client.get("/status", headers={"Authorization": "Bearer wrong"}).status_code == 403
    status = client.get("/status", headers={"Authorization": f"Bearer {RELOAD_TOKEN}"}).json()
    assert (status["status"], status["version"], status["reason"], status["detail"]) == ("ok", version, None, None)
    assert status["model"]["git_commit"] == "0123abc" and status["model"]["airflow_run_id"] == "scheduled__2026-12-07"


def test_health_is_degraded_while_a_champion_that_cannot_load_waits(api, tmp_path):
    home, start = api
    register(home, tmp_path / "v1", scale=0.5)
    client = start(MLOPS_SERVE_RELOAD_TOKEN=RELOAD_TOKEN)
    auth = {"Authorization": f"Bearer {RELOAD_TOKEN}"}
    register(home, tmp_path / "v2", scale=-3.0, broken=True)  # the alias moves to files ONNX Runtime refuses
    reloaded = client.post("/reload", headers=auth).json()
    assert reloaded["reloaded"] is False and reloaded["version"] == "1"

    health = client.get("/health")
    assert health.status_code == 503
    assert health.json() == {"status": "degraded", "version": "1", "reason": "load_failed"}  # terse: no error text
    detail = client.get("/status", headers=auth).json()["detail"]  # the words, for the token's holder
    assert detail.startswith("Could not load fake_news_classifier v2 (now @champion): ")
    assert detail.endswith("still serving v1.") and "\n" not in detail
    served = client.post("/predict", json={"text": "markets rose"}).json()["predictions"][0]
    assert served["version"] == "1"

    register(home, tmp_path / "v3", scale=2.0)
    assert client.post("/reload", headers=auth).json() == {"reloaded": True, "version": "3", "detail": None}
    assert client.get("/health").status_code == 200 and client.get("/health").json()["status"] == "ok"


def test_reloads_leave_no_temporary_folders(api, tmp_path, monkeypatch):
    home, start = api
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where tempfile (and MLflow through it) writes
    register(home, tmp_path / "v1", scale=0.5)
    register(home, tmp_path / "v2", scale=-3.0, broken=True)  # a failed load must not leave one either
    register(home, tmp_path / "v3", scale=2.0)
    client = start(MLOPS_SERVE_RELOAD_TOKEN=RELOAD_TOKEN)
    settled = sorted(p.name for p in scratch.iterdir())
    mlflow = mlflow_client(home)
    for version in ["1", "2", "3"] * 3:
        mlflow.set_registered_model_alias(NAME, "champion", version)
        client.post("/reload", headers={"Authorization": f"Bearer {RELOAD_TOKEN}"})
    assert client.get("/model").json()["version"] == "3"
    assert sorted(p.name for p in scratch.iterdir()) == settled


def test_a_version_whose_artifacts_are_gone_says_so_on_health(api, tmp_path):
    """MLflow downloads an empty folder, without an error, for a version whose artifacts were deleted: the
    reason on /health says that, not that the version is too old to carry its serving files."""
    import shutil
    from urllib.parse import urlparse

    home, start = api
    register(home, tmp_path / "v1", scale=0.5)
    client = start(MLOPS_SERVE_RELOAD_TOKEN=RELOAD_TOKEN)
    register(home, tmp_path / "v2", scale=2.0)
    registry = mlflow_client(home)
    version = registry.get_model_version(NAME, "2")
    model_id = version.model_id or version.source.rstrip("/").split("/")[-1]  # source: models:/<model id>
    location = registry.get_logged_model(model_id).artifact_location
    shutil.rmtree(urlparse(location).path)
    auth = {"Authorization": f"Bearer {RELOAD_TOKEN}"}
    assert client.post("/reload", headers=auth).json()["version"] == "1"
    assert client.get("/health").json() == {"status": "degraded", "version": "1", "reason": "artifacts_missing"}
    detail = client.get("/status", headers=auth).json()["detail"]
    assert "v2" in detail and "artifacts are gone" in detail and "registered before" not in detail


@pytest.mark.parametrize("onnx_path", ["/etc/hostname", "../outside.onnx", "serving/../../outside.onnx", "link.onnx"])
def test_a_manifest_path_outside_the_model_directory_is_refused(tmp_path, onnx_path):
    """`serving.json` is written by whoever registers a version: its paths must stay inside the version's
    model directory (absolute, `..` and links out are refused), or the API would load any file of its host."""
    import json

    from mlops_onnx.serving.artifacts import SERVING_MANIFEST, read_manifest

    model_dir = tmp_path / "model"
    (model_dir / "serving").mkdir(parents=True)
    (tmp_path / "outside.onnx").write_bytes(b"x")
    (model_dir / "link.onnx").symlink_to(tmp_path / "outside.onnx")
    (model_dir / "serving" / "model.onnx").write_bytes(b"x")
    manifest = {"variant": "fp32", "onnx": onnx_path, "preprocessing": []}
    (model_dir / SERVING_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="field 'onnx'.*not a file inside the version's model directory"):
        read_manifest(model_dir, "m v1")
    manifest |= {"onnx": "serving/model.onnx", "preprocessing": [onnx_path]}
    (model_dir / SERVING_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="field 'preprocessing'"):
        read_manifest(model_dir, "m v1")
    (model_dir / SERVING_MANIFEST).write_text(json.dumps(manifest | {"preprocessing": []}))
    assert read_manifest(model_dir, "m v1").onnx == (model_dir / "serving" / "model.onnx").resolve()

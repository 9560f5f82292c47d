"""The fake-news API against a real ONNX model in a real (temporary) MLflow registry."""

import secrets

import numpy as np
import onnx
import pytest
from conftest import mlflow_client
from fastapi.testclient import TestClient
from onnx import TensorProto, helper

from mlops_onnx.serving.app import MAX_ITEMS, ModelHolder, create_app
from mlops_onnx.text import Tokenizer, clean_text

NAME = "fake_news_rnn"
TEXTS = ["the senator said the bill passed", "shocking truth they hide from you", "markets rose on tuesday"]


def tiny_classifier(scale: float) -> onnx.ModelProto:
    """probability = sigmoid(scale * mean(token ids) - 1), shape [batch, 1]: real ONNX, fed int32 ids."""
    nodes = [
        helper.make_node("Cast", ["tokens"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["ids"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["mean", "scale"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "one"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("tokens", TensorProto.INT32, ["batch", 8])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])],
        [
            helper.make_tensor("scale", TensorProto.FLOAT, [], [scale]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


def register(home, folder, scale: float, alias: str = "champion") -> str:
    import mlflow

    client = mlflow_client(home)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer.fit([clean_text("", t) for t in TEXTS], vocab_size=50, sequence_length=8)
    path = tokenizer.save(folder / "tokenizer.json")
    with mlflow.start_run() as run:
        mlflow.log_metrics({"test_f1": 0.95, "parity_fp32_max_abs_diff": 1e-7, "bench_cpu_onnx_fp32_b1_p50_ms": 0.2})
        info = mlflow.onnx.log_model(
            tiny_classifier(scale),
            name="model",
            save_as_external_data=False,
            onnx_execution_providers=["CPUExecutionProvider"],
        )
        mlflow.log_artifact(str(path), "model/preprocessing")
    version = mlflow.register_model(
        info.model_uri, NAME, tags={"serving_variant": "fp32", "data_hash": "ab" * 32, "parity_status": "passed"}
    )
    client.set_registered_model_alias(NAME, alias, version.version)
    assert run.info.run_id
    return str(version.version)


@pytest.fixture
def api(settings_env):
    settings = settings_env()
    clients = []

    def start():
        client = TestClient(create_app(ModelHolder(NAME), poll_seconds=0))
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
    assert response.status_code == 503 and "no fake_news_rnn@champion" in response.json()["detail"]
    assert client.get("/health").json()["model_loaded"] is False


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


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"title": "t", "text": ""}, "empty"),
        ({"title": "t", "text": "   \n\t"}, "whitespace"),
        ({"title": "t", "text": 42}, "string"),
        ({"title": "t"}, "text"),
        ({"articles": []}, "empty"),
        ({"articles": [{"text": "ok"}] * (MAX_ITEMS + 1)}, str(MAX_ITEMS)),
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
    assert response.status_code == 422 and "exceeds" in response.json()["detail"]


RELOAD_TOKEN = secrets.token_urlsafe(16)


def test_hot_reload_when_the_champion_moves(api, tmp_path, settings_env):
    home, start = api
    settings_env(MLOPS_SERVE_RELOAD_TOKEN=RELOAD_TOKEN)
    register(home, tmp_path / "v1", scale=0.5)
    client = start()
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

    settings_env(MLOPS_SERVE_RELOAD_TOKEN=RELOAD_TOKEN)
    missing = client.post("/reload")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert client.post("/reload", headers={"Authorization": RELOAD_TOKEN}).status_code == 401  # no scheme
    assert client.post("/reload", headers={"Authorization": "Bearer wrong-token"}).status_code == 403
    assert client.get("/health").json()["version"] == "1"  # none of them reloaded
    accepted = client.post("/reload", headers={"Authorization": f"Bearer {RELOAD_TOKEN}"})
    assert accepted.status_code == 200 and accepted.json()["version"] == "2"

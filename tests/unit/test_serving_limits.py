"""The fake-news API refuses oversized input before it reaches the model: a body over
MLOPS_SERVE_MAX_BYTES (declared, or streamed without a length), more than MLOPS_SERVE_MAX_ITEMS
articles, or a text over MLOPS_SERVE_MAX_TEXT_CHARS."""

from test_serving import api, register  # noqa: F401 (the fixture and the registry helper)

from mlops_onnx.serving.app import MAX_BYTES, MAX_ITEMS, MAX_TEXT_CHARS


def chunks():
    """A body over the limit sent without a Content-Length (chunked): the limit holds on what arrives."""
    yield b'{"text": "'
    for _ in range(MAX_BYTES // 65536 + 1):
        yield b"a" * 65536
    yield b'"}'


def test_oversized_bodies_batches_and_texts_are_refused(api, tmp_path):  # noqa: F811
    home, start = api
    register(home, tmp_path, scale=0.5)
    client = start()
    json_body = {"Content-Type": "application/json"}

    streamed = client.post("/predict", content=chunks(), headers=json_body)
    assert streamed.status_code == 422 and "exceeds" in streamed.json()["detail"]
    declared = client.post(
        "/predict", content=b'{"text": "short"}', headers={**json_body, "Content-Length": str(MAX_BYTES + 1)}
    )
    assert declared.status_code == 422 and f"{MAX_BYTES + 1} bytes exceeds {MAX_BYTES}" in declared.json()["detail"]

    batch = client.post("/predict", json={"articles": [{"text": "ok"}] * (MAX_ITEMS + 1)})
    assert batch.status_code == 422 and str(MAX_ITEMS) in str(batch.json()["detail"])
    assert client.post("/predict", json={"articles": [{"text": "ok"}] * MAX_ITEMS}).status_code == 200
    long_text = client.post("/predict", json={"text": "a" * (MAX_TEXT_CHARS + 1)})
    assert long_text.status_code == 422 and str(MAX_TEXT_CHARS) in str(long_text.json()["detail"])

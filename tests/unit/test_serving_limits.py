"""The fake-news API refuses oversized input before it reaches the model: a body over
MLOPS_SERVE_MAX_BYTES (declared, or streamed without a length, refused while it arrives), more than
MLOPS_SERVE_MAX_ITEMS articles, or a text over MLOPS_SERVE_MAX_TEXT_CHARS."""

import asyncio

from test_serving import api, register  # noqa: F401 (the fixture and the registry helper)

from mlops_onnx.serving.limits import BodyLimit, RequestLimits
from mlops_onnx.settings import Settings

MAX_BYTES, MAX_ITEMS, MAX_TEXT_CHARS = Settings.serve_max_bytes, Settings.serve_max_items, Settings.serve_max_text_chars
CHUNK = 1 << 16


def chunks():
    """A body over the limit sent without a Content-Length (chunked)."""
    yield b'{"text": "'
    for _ in range(MAX_BYTES // CHUNK + 1):
        yield b"a" * CHUNK
    yield b'"}'


def test_oversized_bodies_batches_and_texts_are_refused(api, tmp_path):  # noqa: F811
    home, start = api
    register(home, tmp_path, scale=0.5)
    client = start()
    json_body = {"Content-Type": "application/json"}

    streamed = client.post("/predict", content=chunks(), headers=json_body)
    assert streamed.status_code == 413 and f"body exceeds {MAX_BYTES} bytes" in streamed.json()["detail"]
    declared = client.post(
        "/predict", content=b'{"text": "short"}', headers={**json_body, "Content-Length": str(MAX_BYTES + 1)}
    )
    assert declared.status_code == 413 and f"{MAX_BYTES + 1} bytes exceeds {MAX_BYTES}" in declared.json()["detail"]

    batch = client.post("/predict", json={"articles": [{"text": "ok"}] * (MAX_ITEMS + 1)})
    assert batch.status_code == 422 and str(MAX_ITEMS) in str(batch.json()["detail"])
    assert client.post("/predict", json={"articles": [{"text": "ok"}] * MAX_ITEMS}).status_code == 200
    long_text = client.post("/predict", json={"text": "a" * (MAX_TEXT_CHARS + 1)})
    assert long_text.status_code == 422 and str(MAX_TEXT_CHARS) in str(long_text.json()["detail"])
    small = start(MLOPS_SERVE_MAX_BYTES="64")  # the limit is a setting
    assert small.post("/predict", json={"text": "x" * 80}).status_code == 413


def test_a_100_mb_chunked_body_is_refused_after_the_limit_without_reading_the_rest():
    """The ASGI receive loop as a server drives it: 64 KiB messages of a 100 MB body. The limit answers 413
    once MAX_BYTES have passed; the app behind it never runs and the rest is never asked for."""
    total, received, sent = 100 * 1024 * 1024, [], []

    async def receive():
        received.append(CHUNK)
        return {"type": "http.request", "body": b"a" * CHUNK, "more_body": sum(received) < total}

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        raise AssertionError("the app must not see an oversized body")

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [(b"transfer-encoding", b"chunked")]}
    asyncio.run(BodyLimit(app, MAX_BYTES)(scope, receive, send))
    assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]
    assert sum(received) == (MAX_BYTES // CHUNK + 1) * CHUNK  # stopped at the first chunk past the limit
    assert b"the rest left unread" in sent[1]["body"]


def test_a_body_within_the_limit_reaches_the_app_whole():
    parts = [b'{"text": ', b'"hello"}']
    seen = []

    async def receive():
        return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}

    async def app(scope, receive, send):
        seen.append(await receive())

    async def send(message):
        raise AssertionError("nothing is refused")

    asyncio.run(BodyLimit(app, MAX_BYTES)({"type": "http", "headers": []}, receive, send))
    assert seen == [{"type": "http.request", "body": b'{"text": "hello"}', "more_body": False}]


def test_every_invalid_body_is_a_422_that_never_echoes_it(api, tmp_path):  # noqa: F811
    """A lone surrogate in a text, a NaN title, a number for a text, bytes that are not JSON: each is a 422
    naming the field, never a 500 (FastAPI's default handler echoes the input, and NaN or a lone surrogate
    cannot be encoded in its reply); the next request on the connection is served."""
    home, start = api
    register(home, tmp_path, scale=0.5)
    client = start()
    json_body = {"Content-Type": "application/json"}
    bodies = {
        "text": b'{"text": "abc \\ud800 def"}',
        "title": b'{"text": "a", "title": NaN}',
        "articles": b'{"articles": [{"text": "ok", "title": "\\udfff"}]}',
        "text ": b'{"text": 12}',
        "body": b'{"text": "unterminated',
    }
    for field, body in bodies.items():
        reply = client.post("/predict", content=body, headers=json_body)
        assert reply.status_code == 422, (body, reply.status_code, reply.text)
        detail = reply.json()["detail"]
        assert field.strip() in {str(part) for error in detail for part in error["loc"]}, (body, detail)
        assert all("input" not in error for error in detail)
        assert client.post("/predict", json={"text": "the senate voted"}).status_code == 200


def test_requests_over_the_cap_are_503_at_once_and_health_is_exempt():
    """With 2 requests in flight, a third is refused at once (503, Retry-After) and /health still passes;
    once one finishes, the next is served."""
    release = asyncio.Event()

    async def app(scope, receive, send):
        if scope["path"] != "/health":
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    limits = RequestLimits(app, max_in_flight=2, timeout_s=30)

    async def call(path: str) -> list[dict]:
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        await limits({"type": "http", "path": path, "headers": []}, receive, send)
        return sent

    async def scenario():
        held = [asyncio.create_task(call("/predict")) for _ in range(2)]
        await asyncio.sleep(0.05)
        refused = await asyncio.wait_for(call("/predict"), 1)
        health = await asyncio.wait_for(call("/health"), 1)
        release.set()
        served = [await task for task in held]
        return refused, health, served, await call("/predict")

    refused, health, served, after = asyncio.run(scenario())
    assert refused[0]["status"] == 503 and (b"retry-after", b"1") in refused[0]["headers"]
    assert b"MLOPS_SERVE_MAX_IN_FLIGHT" in refused[1]["body"]
    assert health[0]["status"] == 200
    assert [s[0]["status"] for s in served] == [200, 200] and after[0]["status"] == 200
    assert limits.in_flight == 0


def test_a_request_whose_body_never_arrives_is_504_at_the_deadline():
    async def app(scope, receive, send):
        await receive()  # waits for a body that never comes
        raise AssertionError("unreachable")

    sent = []

    async def stalled():
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    async def timed() -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()
        await RequestLimits(app, max_in_flight=4, timeout_s=0.2)({"type": "http", "path": "/predict"}, stalled, send)
        return loop.time() - began

    took = asyncio.run(timed())
    assert 0.2 <= took < 2 and sent[0]["status"] == 504
    assert b"not done within 0.2 s" in sent[1]["body"]

"""Dynamic micro-batching: concurrent requests share ONNX Runtime calls, and each gets its own answer."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from test_serving import TEXTS, api, register  # noqa: F401 (the fixture and the registry helper)

from mlops_onnx.serving.batching import MicroBatcher


def test_requests_that_arrive_together_share_one_call_and_get_their_own_slice():
    calls = []

    def infer(articles):
        calls.append(len(articles))
        return "v1", np.asarray(articles, dtype=float) * 10

    async def scenario():
        batcher = MicroBatcher(infer, wait_seconds=0.05, max_items=8)
        batcher.start()
        try:
            together = await asyncio.gather(*(batcher.submit([i, i + 0.5]) for i in range(6)))
            alone = await batcher.submit([7])
        finally:
            await batcher.stop()
        return together, alone

    together, alone = asyncio.run(scenario())
    assert [list(p) for _, p in together] == [[10 * i, 10 * i + 5] for i in range(6)]
    assert alone == ("v1", np.asarray([70.0]))
    assert calls[-1] == 1 and sum(calls[:-1]) == 12 and len(calls) - 1 < 6  # batched, up to 8 articles a call
    assert max(calls) <= 8


def test_an_error_reaches_every_request_of_the_batch():
    def infer(articles):
        raise RuntimeError("no model")

    async def scenario():
        batcher = MicroBatcher(infer, wait_seconds=0.01, max_items=8)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit([i]) for i in range(3)), return_exceptions=True)
        finally:
            await batcher.stop()

    assert [str(e) for e in asyncio.run(scenario())] == ["no model"] * 3


def test_the_batching_api_answers_like_the_plain_one(api, tmp_path):  # noqa: F811
    home, start = api
    register(home, tmp_path, scale=0.5)
    bodies = [{"title": f"title {i}", "text": TEXTS[i % 3] + f" number {i}"} for i in range(16)]
    plain = start(MLOPS_SERVE_BATCHING="0")
    expected = plain.post("/predict", json={"articles": bodies}).json()["predictions"]
    client = start(MLOPS_SERVE_BATCHING="1", MLOPS_SERVE_BATCH_WAIT_MS="20", MLOPS_SERVE_BATCH_MAX_ITEMS="8")
    with ThreadPoolExecutor(8) as pool:
        batched = list(pool.map(lambda b: client.post("/predict", json=b).json()["predictions"][0], bodies))
    assert batched == expected and len({p["probability_fake"] for p in batched}) > 1

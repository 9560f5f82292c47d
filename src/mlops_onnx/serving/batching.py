"""Dynamic micro-batching: requests that arrive together share one ONNX Runtime call.

One worker task takes the first waiting request, then every request already queued (those that arrived
while the previous call ran), then waits up to `wait_seconds` for more, until `max_items` articles; the
articles go through the model in one call (in a thread, so the event loop keeps accepting requests) and
each request gets its own slice of the result, with the version that computed it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class _Pending:
    articles: list
    future: asyncio.Future


class MicroBatcher:
    """`infer(articles) -> (model, probabilities)` for many requests at once."""

    def __init__(self, infer: Callable[[list], tuple[object, np.ndarray]], wait_seconds: float, max_items: int):
        self.infer = infer
        self.wait_seconds = wait_seconds
        self.max_items = max_items
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def submit(self, articles: list) -> tuple[object, np.ndarray]:
        pending = _Pending(articles, asyncio.get_running_loop().create_future())
        await self._queue.put(pending)
        return await pending.future

    async def _gather(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        size = len(batch[0].articles)
        while size < self.max_items and not self._queue.empty():  # arrived while the last call ran
            batch.append(self._queue.get_nowait())
            size += len(batch[-1].articles)
        deadline = asyncio.get_running_loop().time() + self.wait_seconds
        while size < self.max_items:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except TimeoutError:
                break
            size += len(batch[-1].articles)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._gather()
            batch = [p for p in batch if not p.future.done()]  # a client that went away needs no answer
            if not batch:
                continue
            try:
                model, probabilities = await asyncio.to_thread(self.infer, [a for p in batch for a in p.articles])
            except Exception as exc:  # every request of the batch gets the error (503 without a model)
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            start = 0
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_result((model, probabilities[start : start + len(pending.articles)]))
                start += len(pending.articles)

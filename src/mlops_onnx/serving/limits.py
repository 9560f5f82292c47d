"""The server's own limits, as ASGI middleware, whatever runs the app (uvicorn, gunicorn, a test client).

- `BodyLimit`: the request-body limit, enforced while the body arrives: a declared length over it is refused
  before anything is read, and a streamed (chunked) body as soon as the bytes received pass it, without
  reading the rest. At most `max_bytes` of a body are ever held in memory.
- `RequestLimits`: at most `max_in_flight` requests inside the app at once (503 with Retry-After beyond it,
  at once), and each one done within `timeout_s`, its body's arrival included (504 when no answer started by
  then): slow or stalled clients cannot hold the server.
"""

from __future__ import annotations

import asyncio

from fastapi.responses import JSONResponse


class BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`; the app gets the body it read, replayed."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(f"body of {declared} bytes exceeds {self.max_bytes}", scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                detail = f"body exceeds {self.max_bytes} bytes (refused at {size} bytes, the rest left unread)"
                await self._refuse(detail, scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> dict:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)

    @staticmethod
    async def _refuse(detail: str, scope, receive, send) -> None:
        # Connection: close, because the unread rest of the body cannot be skipped on a kept-alive connection.
        response = JSONResponse(status_code=413, content={"detail": detail}, headers={"Connection": "close"})
        await response(scope, receive, send)


class RequestLimits:
    """ASGI middleware: a cap on requests in flight and a deadline on each (see the module's docstring).
    `exempt` paths (the health check) skip the cap, never the deadline."""

    def __init__(self, app, max_in_flight: int, timeout_s: float, exempt: tuple[str, ...] = ("/health",)) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.exempt = exempt
        self.in_flight = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counted = scope["path"] not in self.exempt
        if counted and self.in_flight >= self.max_in_flight:
            detail = f"server busy: {self.max_in_flight} requests in flight (MLOPS_SERVE_MAX_IN_FLIGHT); retry"
            await JSONResponse(status_code=503, content={"detail": detail}, headers={"Retry-After": "1"})(
                scope, receive, send
            )
            return
        started = False

        async def watched(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        self.in_flight += counted
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.app(scope, receive, watched)
        except TimeoutError:
            if started:  # half an answer cannot be taken back: end the connection
                raise
            detail = f"request not done within {self.timeout_s:g} s (MLOPS_SERVE_REQUEST_TIMEOUT_S)"
            await JSONResponse(status_code=504, content={"detail": detail}, headers={"Connection": "close"})(
                scope, receive, send
            )
        finally:
            self.in_flight -= counted

"""The request-body limit, enforced while the body arrives: a declared length over it is refused before
anything is read, and a streamed (chunked) body as soon as the bytes received pass it, without reading
the rest. At most `max_bytes` of a body are ever held in memory."""

from __future__ import annotations

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

"""A cap on request bodies, enforced before FastAPI reads or parses one.

A declared ``Content-Length`` over the limit is refused without reading a byte. A body
without one (``Transfer-Encoding: chunked``) is read up to the limit and refused as soon
as it passes it, so a client cannot make the API buffer an unbounded stream; a body
within the limit is handed on unchanged.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    """The error reply, closing the connection: what is left of the body is not read."""
    await problem(status, detail, headers={"Connection": "close"})(scope, receive, send)


class BodySizeLimit:
    """ASGI middleware: 413 for a request body larger than ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: str) -> str:
        return f"request body of {size} bytes is larger than LEAP_MAX_BODY_BYTES={self.max_bytes}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _refuse(
                    scope,
                    receive,
                    send,
                    400,
                    f"Content-Length {declared.decode(errors='replace')!r} "
                    "is not a number of bytes",
                )
                return
            if length > self.max_bytes:
                await _refuse(scope, receive, send, 413, self._too_large(str(length)))
                return
            await self.app(scope, receive, send)
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            await self.app(scope, receive, send)  # no body at all
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await _refuse(
                    scope, receive, send, 413, self._too_large(f"more than {self.max_bytes}")
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then the client's own
    messages (a disconnect) as before."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed

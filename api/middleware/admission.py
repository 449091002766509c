"""A cap on requests in progress, so a burst queues instead of exhausting the database
pool.

Each request holds a pooled connection from its first query until its session closes, and
FastAPI runs the sync dependencies and the endpoint on a thread pool. Under a burst larger
than the pool, requests holding connections wait for threads while threads wait for
connections, until SQLAlchemy's pool timeout turns them into errors. Admitting at most
``LEAP_MAX_CONCURRENT_REQUESTS`` (below the pool's 40 connections and the thread pool's 40
threads) makes the rest wait here, on the event loop, holding neither. A request that
waits longer than ``LEAP_ADMISSION_WAIT_SECONDS`` is a 503 with ``Retry-After``.

A followed event stream (``events?follow=true``) counts only until its response starts:
its endpoint closes its session before streaming, and the stream reads with short
sessions of its own.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import RETRY_AFTER_SECONDS, problem

_TRUE = {"1", "true", "yes", "on", "t", "y"}


def _is_stream(scope: Scope) -> bool:
    if not scope["path"].endswith("/events"):
        return False
    follow = QueryParams(scope.get("query_string", b"").decode("latin-1")).get("follow", "")
    return follow.lower() in _TRUE


class AdmissionLimit:
    """ASGI middleware: at most ``limit`` requests in progress; the liveness probe is
    never held back."""

    def __init__(self, app: ASGIApp, limit: int, wait_seconds: float) -> None:
        self.app = app
        self.limit = limit
        self.wait_seconds = wait_seconds
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        if self._slots is None:  # made here, inside the server's event loop
            self._slots = asyncio.Semaphore(self.limit)
        slots = self._slots
        if slots.locked():  # only then wait, with a timeout (wait_for costs a task)
            try:
                await asyncio.wait_for(slots.acquire(), self.wait_seconds)
            except TimeoutError:
                await self._busy(scope, receive, send)
                return
        else:
            await slots.acquire()  # a free slot is taken without suspending
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        async def send_releasing(message: Message) -> None:
            if message["type"] == "http.response.start":
                release()
            await send(message)

        try:
            await self.app(scope, receive, send_releasing if _is_stream(scope) else send)
        finally:
            release()

    async def _busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        wait = RETRY_AFTER_SECONDS["busy"]
        detail = (
            f"server busy: more than LEAP_MAX_CONCURRENT_REQUESTS={self.limit} requests in "
            f"progress for {self.wait_seconds:g} s; retry in {wait} s"
        )
        await problem(503, detail, retry_after=wait)(scope, receive, send)

"""Drops a client that stops sending its request body: each wait for more of the body is bounded."""

from __future__ import annotations

from http import HTTPStatus

import anyio
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from audioverse.errors import DomainError


class RequestTimeout(DomainError):
    status_code = HTTPStatus.REQUEST_TIMEOUT
    slug = "request-timeout"


class BodyIdleTimeoutMiddleware(ASGIMiddleware):
    """Answer 408 (and close the connection) when no part of a request body arrives for ``idle_seconds``.

    Uvicorn bounds neither the time to send a body nor the pause between its parts (its keep-alive
    timeout only runs between requests), so a client that declares a length and then stalls would hold
    the request open for as long as it likes. Only waits for the body are bounded: once it is complete,
    ``receive()`` waits for the client to hang up, which lasts as long as a stream does.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        body_complete = False

        async def bounded_receive() -> ReceiveMessage:
            nonlocal body_complete
            if body_complete:
                return await receive()
            with anyio.move_on_after(self.idle_seconds):
                message = await receive()
                body_complete = message["type"] != "http.request" or not message.get("more_body", False)
                return message
            # Raised inside the app's body read, so the app's error handling answers (problem+json); if the
            # response had already started, the server closes the connection instead.
            raise RequestTimeout(
                f"No part of the request body arrived for {self.idle_seconds:g} s; the request was dropped.",
                headers={"Connection": "close"},
            )

        await next_app(scope, bounded_receive, send)

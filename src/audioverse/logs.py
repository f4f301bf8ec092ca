"""Logging: one line per request with its request id, carried into the jobs it causes; JSON or console lines."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import Any

import structlog
from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.logging.config import (
    LoggingConfig,
    StructLoggingConfig,
    default_logger_factory,
    default_structlog_processors,
    default_structlog_standard_lib_processors,
)
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from structlog.typing import Processor
from taskiq import TaskiqMessage, TaskiqMiddleware

from audioverse.config import Settings

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_KEY = "request_id"
# A proxy's id (nginx's hex, a UUID, an AWS trace id) fits; anything longer or stranger could forge log lines.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")

logger = structlog.get_logger("audioverse.requests")


def request_id_from(incoming: str | None) -> str:
    """The caller's request id when it is a sane token, else a fresh one."""
    if incoming is not None and _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    """The request id bound to this context (a request, or a job a request caused), if any."""
    value = structlog.contextvars.get_contextvars().get(REQUEST_ID_KEY)
    return value if isinstance(value, str) else None


class RequestLogMiddleware:
    """Gives each HTTP request an id (echoed as ``X-Request-ID``, bound for every log line) and logs one line.

    It wraps the whole application, so requests that no route matches (404, 405) are logged too. The
    line has the path without its query: a stream URL's query is its signed token.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers.from_scope(scope).get(REQUEST_ID_HEADER))
        started = time.perf_counter()
        status: int | None = None
        # Read now: routing to a mounted app (the admin, static files) strips the mount's path from the scope.
        path = scope["path"]

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_request_id)
            finally:
                # Also when the client left mid-stream: status is what was sent (None if nothing was).
                logger.info(
                    "request",
                    method=scope["method"],
                    path=path,
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                )


class RequestIdTaskMiddleware(TaskiqMiddleware):
    """Carries the sender's request id in a task's labels and binds it while a worker runs the task."""

    def pre_send(self, message: TaskiqMessage) -> TaskiqMessage:
        request_id = current_request_id()
        if request_id is not None:
            message.labels.setdefault(REQUEST_ID_KEY, request_id)
        return message

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        # Each message runs in an asyncio task of its own, so the binding ends with it.
        request_id = message.labels.get(REQUEST_ID_KEY)
        if isinstance(request_id, str):
            structlog.contextvars.bind_contextvars(request_id=request_id)
        return message


def _console_renderer(stream: Any) -> Processor:
    # Colours only for a terminal: piped console lines stay plain text. Tracebacks without each frame's
    # locals: a failing task holding 100,000 ids wrote 340,000 lines a failure, and locals hold secrets.
    return structlog.dev.ConsoleRenderer(
        colors=stream.isatty(), exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False)
    )


def structlog_config(settings: Settings) -> StructLoggingConfig:
    """JSON lines when ``log_json`` is set, console lines otherwise, whatever the output is.

    Standard-library records (uvicorn, Taskiq) take the same form; an exception in JSON is one
    ``exception`` string. Uvicorn's access log is off: :class:`RequestLogMiddleware` writes that line.
    """
    as_json = settings.log_json
    processors = default_structlog_processors(as_json=as_json)
    # Library records (Taskiq running a job, uvicorn) get the request id bound where they are emitted too.
    library_processors = [
        structlog.contextvars.merge_contextvars,
        *default_structlog_standard_lib_processors(as_json=as_json),
    ]
    if as_json:
        # Litestar's chain hands exc_info to the JSON serializer as is, which cannot encode an exception class.
        library_processors.insert(-1, structlog.processors.format_exc_info)
    else:
        processors[-1] = _console_renderer(sys.stdout)
        library_processors[-1] = _console_renderer(sys.stderr)
    return StructLoggingConfig(
        processors=processors,
        logger_factory=default_logger_factory(as_json=as_json),
        standard_lib_logging_config=LoggingConfig(
            formatters={"standard": {"()": structlog.stdlib.ProcessorFormatter, "processors": library_processors}},
            loggers={
                # Uvicorn's own lines (startup, errors) in the same form; its access line is the request line's double.
                "uvicorn": {"handlers": ["queue_listener"], "propagate": False},
                "uvicorn.access": {"handlers": [], "propagate": False},
                # httpx (httpx2 in the Meilisearch client) writes a line for every request it sends: each
                # search's call to Meilisearch. Formatting them on the log thread took a fifth of the API's
                # CPU under search load, and they say nothing the request's own line does not; a failed
                # call still surfaces as our error.
                **{name: {"level": "WARNING"} for name in ("httpx", "httpcore", "httpx2", "httpcore2")},
                # "Getting previous time schedules" on every read of the retries' source, every 5 s.
                "taskiq.redis_schedule_source": {"level": "WARNING"},
            },
        ),
        log_exceptions="debug",
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(settings.log_level)),
    )


def configure_logging(settings: Settings) -> None:
    """Apply :func:`structlog_config` in a process with no app (a worker), as the app's structlog plugin does."""
    config = structlog_config(settings)
    config.configure()
    if config.standard_lib_logging_config is not None:
        config.standard_lib_logging_config.configure()

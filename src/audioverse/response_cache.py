"""Anonymous discovery reads answered from a shared cache that a write makes stale at once, with ETags and 304s.

Handlers opt in with Litestar's ``cache=True``; Litestar's response cache stores what they send in the
``response_cache`` store, which here is a :class:`VersionedStore`: every key is read and written under
the current *content version*, a token kept in the shared store (Redis in production, the process's
memory store embedded). A committed catalog change, a finished search drain, a synonym change, a
reindex or a recommendation rebuild replaces the token (:func:`bump_content_version`), so the next
request misses and reads afresh; old entries simply expire. A request stores its response under the
version it read *before* reading the data, so a response computed from data older than a bump is never
stored under the version after it.

Requests that carry credentials are neither answered from nor stored in the shared cache, unless their
route says its answer is the same for every caller (``SAME_FOR_EVERY_CALLER``: the catalog, search and
suggest). Every answer of an opted-in route carries an ``ETag`` (a hash of the body) and ``Cache-Control``
(``public, no-cache`` for an answer every caller shares, so a CDN stores it and revalidates; ``private,
no-cache`` for a signed-in caller's own); a matching ``If-None-Match`` gets ``304 Not Modified`` with no body.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, cast

import structlog
from advanced_alchemy.config import SQLAlchemyAsyncConfig
from litestar.config.response_cache import ResponseCacheConfig, default_cache_key_builder
from litestar.connection import Request
from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.status_codes import HTTP_200_OK, HTTP_304_NOT_MODIFIED
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.types import ASGIApp, HTTPResponseStartEvent, HTTPScope, Message, Receive, Scope, Send
from sqlalchemy import event
from sqlalchemy.orm import Session

from audioverse.db import AFTER_COMMIT_TASKS_KEY, answer_is_the_callers_own, same_for_every_caller, session_factory

RESPONSE_CACHE_STORE = "response_cache"
CONTENT_VERSION_KEY = "response-cache:version"
STALE_KEY = "audioverse.response_cache_stale"
"""``session.info`` flag: this transaction changed what cached responses show; set by the catalog's flush hook."""
_UNCACHED = "uncached"
"""The key of a request the shared cache must not answer: the store answers it with a miss, without a read."""
_read_version: ContextVar[str | None] = ContextVar("response_cache_version", default=None)
_VERSION_LIFETIME = timedelta(days=30)  # outlives every entry; a lost token only costs one round of misses


async def bump_content_version(store: Store) -> None:
    """Make every cached response stale: the next read of each is computed afresh."""
    await store.set(CONTENT_VERSION_KEY, uuid.uuid4().hex, expires_in=_VERSION_LIFETIME)
    if isinstance(store, MemoryStore):
        await store.delete_expired()  # the memory store only forgets an expired entry when it is read


class VersionedStore(Store):
    """``store`` with every key under the current content version (see the module's docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def _version(self) -> str:
        version = await self.store.get(CONTENT_VERSION_KEY)
        return version.decode() if version else "0"

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        if key == _UNCACHED:
            return None
        version = await self._version()
        _read_version.set(version)  # the response computed next is stored under this version
        return await self.store.get(f"response:{version}:{key}", renew_for)

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        version = _read_version.get() or await self._version()
        await self.store.set(f"response:{version}:{key}", value, expires_in)

    async def delete(self, key: str) -> None:
        await self.store.delete(f"response:{await self._version()}:{key}")

    async def delete_all(self) -> None:
        await bump_content_version(self.store)

    async def exists(self, key: str) -> bool:
        return await self.store.exists(f"response:{await self._version()}:{key}")

    async def expires_in(self, key: str) -> int | None:
        return await self.store.expires_in(f"response:{await self._version()}:{key}")


def keep_out_of_shared_cache(request: Request[Any, Any, Any]) -> None:
    """Answer this request afresh next time too: its handler must run for every such request."""
    request.scope["state"][_UNCACHED] = True


def response_cache_config(seconds: int) -> ResponseCacheConfig:
    """Litestar's response cache over the ``response_cache`` store, for ``seconds`` at most (0: off)."""

    def cache_key(request: Request[Any, Any, Any]) -> str:
        if not seconds or answer_is_the_callers_own(request.scope):
            return _UNCACHED
        # Method, path and the query parameters sorted by name: one question asked in any order is one entry.
        return default_cache_key_builder(request)

    def worth_storing(scope: HTTPScope, status_code: int) -> bool:
        wanted = not answer_is_the_callers_own(scope) and not scope.get("state", {}).get(_UNCACHED)
        return bool(seconds) and status_code == HTTP_200_OK and wanted

    return ResponseCacheConfig(
        default_expiration=seconds or None,
        store=RESPONSE_CACHE_STORE,
        key_builder=cache_key,
        cache_response_filter=worth_storing,
    )


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 13.1.2: weak comparison against a list of tags, or ``*``."""
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)


class ConditionalGetMiddleware(ASGIMiddleware):
    """``ETag``, ``Cache-Control`` and ``304`` for the GETs of routes that use the response cache."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        handler = scope.get("route_handler")
        if scope.get("method") not in {"GET", "HEAD"} or handler is None or not getattr(handler, "cache", False):
            await next_app(scope, receive, send)
            return
        if_none_match = Headers.from_scope(scope).get("if-none-match")
        cache_control = "private, no-cache" if answer_is_the_callers_own(scope) else "public, no-cache"
        start: HTTPResponseStartEvent | None = None
        body: list[bytes] = []

        async def send_with_validators(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            headers = MutableScopeHeaders.from_message(cast("Any", start))
            if start["status"] != 200:
                await send(start)
                await send({"type": "http.response.body", "body": b"".join(body), "more_body": False})
                return
            content = b"".join(body)
            etag = f'"{hashlib.blake2b(content, digest_size=16).hexdigest()}"'
            headers["ETag"] = etag
            headers["Cache-Control"] = cache_control
            if not same_for_every_caller(handler):
                headers["Vary"] = "Authorization"
            if if_none_match is not None and _etag_matches(if_none_match, etag):
                del headers["Content-Length"]
                del headers["Content-Type"]
                await send({**start, "status": HTTP_304_NOT_MODIFIED})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send(start)
            await send({"type": "http.response.body", "body": content, "more_body": False})

        await next_app(scope, receive, send_with_validators)


def bump_after_commit(database: SQLAlchemyAsyncConfig, store: Store) -> Callable[[], None]:
    """After each commit of ``database``'s sessions that changed what responses show, bump the content version.

    The bump runs as a task on the running loop; a request awaits it (:func:`audioverse.db.commit_and_settle`)
    before it answers, so the writer's very next read is fresh. Returns the call that unregisters the hook.
    """
    pending: set[asyncio.Task[None]] = set()
    logger = structlog.get_logger(__name__)

    async def bump() -> None:
        try:
            await bump_content_version(store)
        except Exception as exc:  # the store down: entries still expire; /api/ready reports the store
            logger.warning("response cache not invalidated", error=repr(exc))

    def after_commit(session: Session) -> None:
        if session.get_nested_transaction() is not None or not session.info.pop(STALE_KEY, False):
            return
        task = asyncio.get_running_loop().create_task(bump())
        pending.add(task)
        task.add_done_callback(pending.discard)
        session.info.setdefault(AFTER_COMMIT_TASKS_KEY, []).append(task)

    def after_rollback(session: Session, _transaction: Any) -> None:
        session.info.pop(STALE_KEY, None)

    factory = session_factory(database)
    event.listen(factory, "after_commit", after_commit)
    event.listen(factory, "after_soft_rollback", after_rollback)

    def remove() -> None:
        event.remove(factory, "after_commit", after_commit)
        event.remove(factory, "after_soft_rollback", after_rollback)

    return remove

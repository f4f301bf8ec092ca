"""Serve a stored object over HTTP: 200, 206, 304 or 416, its bytes streamed from storage in bounded chunks."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator, Iterable, Mapping
from http import HTTPStatus
from typing import Any, cast

from advanced_alchemy.config import SQLAlchemyAsyncConfig
from litestar import Litestar, Request, Response
from litestar.background_tasks import BackgroundTask, BackgroundTasks
from litestar.datastructures import Cookie
from litestar.enums import MediaType
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import HTTPResponseBodyEvent, Receive, Send, TypeEncodersMap
from litestar.utils.helpers import get_enum_string_value

from audioverse.config import Settings
from audioverse.errors import DomainError, NotFound
from audioverse.listening.ranges import (
    ByteRange,
    FullContent,
    MultipartByteranges,
    NotModified,
    RangeNotSatisfiable,
    Representation,
    RequestConditions,
    evaluate,
    quote_etag,
    validator_headers,
)
from audioverse.storage.base import DEFAULT_CHUNK_SIZE, ObjectInfo, ObjectNotFound, Storage


class StreamDelivery:
    """What the stream route needs besides the request: where the audio is, how it goes out, and the keys.

    A plain class, not a dataclass: the route's signature model would introspect a dataclass's fields.
    """

    __slots__ = ("database", "secret_key", "settings", "storage")

    def __init__(self, storage: Storage, settings: Settings, secret_key: str, database: SQLAlchemyAsyncConfig) -> None:
        self.storage = storage
        self.settings = settings
        self.secret_key = secret_key
        self.database = database


class RangeNotSatisfiableError(DomainError):
    """The Range header is invalid or asks for bytes the file does not have."""

    status_code = HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE
    slug = "range-not-satisfiable"


WATCHED_FROM_BYTES = 4 * 1024 * 1024
"""Bodies this long and longer are sent beside Litestar's task that stops them when the client hangs up.

Shorter ones (a player's ranges) are sent without it: starting that task cost more than sending a
megabyte, and a client that hangs up costs at most this much reading from the page cache.
"""


class _AudioBody(ASGIStreamingResponse):
    """Litestar's streaming response: a short body goes without a disconnect watcher, ending with its last chunk."""

    __slots__ = ("length",)
    length: int

    def __init__(self, *, length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.length = length

    async def send_body(self, send: Send, receive: Receive) -> None:
        if self.length >= WATCHED_FROM_BYTES:
            await super().send_body(send, receive)
        else:
            await self._stream(send)

    async def _stream(self, send: Send) -> None:
        remaining = self.length
        async for chunk in self.iterator:
            remaining -= len(chunk)
            body = chunk if isinstance(chunk, bytes) else chunk.encode(self.encoding)
            await send(HTTPResponseBodyEvent(type="http.response.body", body=body, more_body=remaining > 0))
        if remaining > 0 or not self.length:
            # Storage ended early (the server then reports the short body) or there was none to send.
            await send(HTTPResponseBodyEvent(type="http.response.body", body=b"", more_body=False))


class AudioStream(Stream):
    """A :class:`~litestar.response.Stream` of ``length`` bytes, sent as :class:`_AudioBody`."""

    __slots__ = ("length",)
    length: int

    def __init__(self, content: AsyncIterator[bytes] | tuple[()], *, length: int, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.length = length

    def to_asgi_response(
        self,
        app: Litestar | None,
        request: Request[Any, Any, Any],
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: MediaType | str | None = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> ASGIResponse:
        # As Stream's own, less its deprecated ``app`` and callable content, which this class never gets.
        return _AudioBody(
            length=self.length,
            background=self.background or background,
            content_length=0,
            cookies=self.cookies if cookies is None else itertools.chain(self.cookies, cookies),
            encoded_headers=encoded_headers,
            encoding=self.encoding,
            headers={**headers, **self.headers} if headers is not None else self.headers,
            is_head_response=is_head_response,
            iterator=cast("AsyncIterator[bytes] | tuple[()]", self.iterator),
            media_type=get_enum_string_value(media_type or self.media_type or MediaType.TEXT),
            status_code=self.status_code or status_code,
        )


def representation_of(info: ObjectInfo) -> Representation:
    return Representation(size=info.size, etag=quote_etag(info.etag), last_modified=info.modified_at)


def _range_bytes(storage: Storage, key: str, byte_range: ByteRange, chunk_size: int) -> AsyncIterator[bytes]:
    return storage.read_range(key, byte_range.start, byte_range.end, chunk_size)


async def _whole_bytes(storage: Storage, key: str, size: int, chunk_size: int) -> AsyncIterator[bytes]:
    if size:
        # The end is explicit so a file that grows after stat cannot overrun Content-Length.
        async for chunk in storage.read_range(key, 0, size - 1, chunk_size):
            yield chunk


async def _multipart_bytes(
    storage: Storage, key: str, layout: MultipartByteranges, chunk_size: int
) -> AsyncIterator[bytes]:
    for part_header, byte_range in layout.parts:
        yield part_header
        async for chunk in storage.read_range(key, byte_range.start, byte_range.end, chunk_size):
            yield chunk
    yield layout.closing


async def stream_object(
    storage: Storage,
    key: str,
    *,
    method: str,
    headers: Mapping[str, str],
    content_type: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Response[Any]:
    """Answer a GET or HEAD for ``key`` honouring Range, If-Range, If-None-Match and If-Modified-Since.

    Raises :class:`RangeNotSatisfiableError` (416, ``Content-Range: bytes */size``) and
    :class:`~audioverse.errors.NotFound` when storage has no such object.
    """
    try:
        info = await storage.stat(key)
    except ObjectNotFound as exc:
        raise NotFound("The audio file is not in storage.") from exc
    # Seam for delegated delivery (nginx X-Accel-Redirect, a presigned S3 redirect): it belongs here,
    # after the object is known to exist and before any Range logic, because the delegate does its own.
    representation = representation_of(info)
    decision = evaluate(RequestConditions.from_headers(headers), representation)
    response_headers = validator_headers(representation)
    if isinstance(decision, NotModified):
        return Response(content=None, status_code=HTTPStatus.NOT_MODIFIED, headers=response_headers)
    if isinstance(decision, RangeNotSatisfiable):
        raise RangeNotSatisfiableError(
            f"The requested range is not satisfiable; the file has {representation.size} bytes.",
            headers={"content-range": decision.content_range},
        )

    body: AsyncIterator[bytes]
    if isinstance(decision, FullContent):
        status, media_type, length = HTTPStatus.OK, content_type, representation.size
        body = _whole_bytes(storage, key, representation.size, chunk_size)
    elif len(decision.ranges) == 1:
        (only,) = decision.ranges
        status, media_type, length = HTTPStatus.PARTIAL_CONTENT, content_type, only.length
        response_headers["content-range"] = only.content_range
        body = _range_bytes(storage, key, only, chunk_size)
    else:
        # nginx numbers its boundaries; a random one is far less likely to occur inside the audio bytes,
        # where it would cut a client's multipart parser short.
        layout = MultipartByteranges.build(decision.ranges, content_type, boundary=secrets.token_hex(10))
        status, media_type, length = HTTPStatus.PARTIAL_CONTENT, layout.content_type, layout.content_length
        body = _multipart_bytes(storage, key, layout, chunk_size)

    response_headers["content-length"] = str(length)
    # Litestar sends whatever a GET handler returns to HEAD too; the generators above have not
    # started, so leaving them unread opens no file.
    content: AsyncIterator[bytes] | tuple[()] = () if method.upper() == "HEAD" else body
    return AudioStream(content, length=length, status_code=status, media_type=media_type, headers=response_headers)

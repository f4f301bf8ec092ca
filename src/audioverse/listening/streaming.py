"""Serve a stored object over HTTP: 200, 206, 304 or 416, its bytes streamed from storage in bounded chunks."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping
from http import HTTPStatus
from typing import Any

from litestar import Response
from litestar.response import Stream

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


class RangeNotSatisfiableError(DomainError):
    """The Range header is invalid or asks for bytes the file does not have."""

    status_code = HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE
    slug = "range-not-satisfiable"


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
    return Stream(content, status_code=status, media_type=media_type, headers=response_headers)

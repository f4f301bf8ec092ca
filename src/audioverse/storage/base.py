"""The Storage port: what the service needs from wherever audio and images are kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

import msgspec

DEFAULT_CHUNK_SIZE = 64 * 1024


class ObjectNotFound(LookupError):
    """The key names no stored object."""


class StorageUnavailable(Exception):
    """The storage refuses or lacks what the service needs; the message says what, for ``/api/ready``."""


class ObjectInfo(msgspec.Struct, frozen=True):
    """What a stored object's metadata says."""

    key: str
    size: int
    modified_at: datetime
    etag: str
    content_type: str | None = None


@runtime_checkable
class Storage(Protocol):
    """Object storage with streaming reads and writes; adapters: local directory, S3."""

    name: str

    async def put_file(self, key: str, path: Path, content_type: str | None = None) -> ObjectInfo:
        """Store the file at ``path`` under ``key`` (streamed, never read whole into memory)."""
        ...

    def read_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        """Yield bytes ``start`` to ``end`` inclusive (to the end when ``None``) in bounded chunks."""
        ...

    async def stat(self, key: str) -> ObjectInfo:
        """Metadata of ``key``; raises :class:`ObjectNotFound`."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        ...

    async def check(self) -> None:
        """Raise if the storage cannot be reached or used (readiness probe); ``StorageUnavailable`` says why."""
        ...

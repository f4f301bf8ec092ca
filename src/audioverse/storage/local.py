"""Local-directory storage adapter: the embedded profile's home for audio and images."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import anyio

from audioverse.storage.base import DEFAULT_CHUNK_SIZE, ObjectInfo, ObjectNotFound


def _read_if_cached(descriptor: int, size: int, offset: int) -> bytes | None:
    """Up to ``size`` bytes at ``offset`` if the page cache holds them, read on the event loop; else ``None``.

    A thread hop per chunk cost more CPU than the copy itself. RWF_NOWAIT makes the kernel refuse a
    read that would wait for the disk, so only those reads go to a thread and a cold file never
    stalls the loop (nginx, with its default ``aio off``, would block on them).
    """
    if _NO_WAIT is None:
        return None
    buffer = bytearray(size)
    try:
        count = os.preadv(descriptor, [buffer], offset, _NO_WAIT)
    except OSError:
        # EAGAIN: not cached; EOPNOTSUPP: a file system without non-blocking reads. The thread reads it.
        return None
    return bytes(memoryview(buffer)[:count])


_NO_WAIT: int | None = getattr(os, "RWF_NOWAIT", None)
"""Linux's flag for a read that fails rather than waits for the disk; elsewhere every read takes a thread."""


class LocalStorage:
    """Keeps each object as a file under ``root``; keys are relative POSIX paths."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path_for(self, key: str) -> Path:
        """The file that holds ``key``; refuses keys that would leave the root."""
        relative = PurePosixPath(key)
        if not key or relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"invalid storage key {key!r}")
        return self.root.joinpath(*relative.parts)

    async def put_file(self, key: str, path: Path, content_type: str | None = None) -> ObjectInfo:
        target = self.path_for(key)
        partial = target.with_name(target.name + ".partial")

        def copy() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, partial)
            # The rename makes the object appear whole or not at all.
            os.replace(partial, target)

        await anyio.to_thread.run_sync(copy)
        return await self.stat(key)

    async def read_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        path = self.path_for(key)
        try:
            # Opening a file whose directory entry is cached costs microseconds, less than a thread hop.
            descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        try:
            position = start
            stop = None if end is None else end + 1
            while stop is None or position < stop:
                wanted = chunk_size if stop is None else min(chunk_size, stop - position)
                chunk = _read_if_cached(descriptor, wanted, position)
                if chunk is None:
                    chunk = await anyio.to_thread.run_sync(os.pread, descriptor, wanted, position)
                if not chunk:
                    return
                position += len(chunk)
                yield chunk
        finally:
            os.close(descriptor)

    async def stat(self, key: str) -> ObjectInfo:
        path = self.path_for(key)
        try:
            result = os.stat(path)
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        modified = datetime.fromtimestamp(result.st_mtime, tz=UTC)
        # Size and mtime identify a version of a file the way nginx's ETag does.
        etag = hashlib.sha256(f"{result.st_size}:{result.st_mtime_ns}".encode()).hexdigest()[:32]
        return ObjectInfo(key=key, size=result.st_size, modified_at=modified, etag=etag)

    async def delete(self, key: str) -> None:
        await anyio.Path(self.path_for(key)).unlink(missing_ok=True)

    async def check(self) -> None:
        root = anyio.Path(self.root)
        await root.mkdir(parents=True, exist_ok=True)
        probe = root / ".ready-probe"
        await probe.write_bytes(b"ok")
        await probe.unlink()

"""The local storage adapter: whole and ranged reads, stat, delete, and keys that try to escape."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from audioverse.storage import LocalStorage, ObjectNotFound

PAYLOAD = bytes(range(256)) * 1000  # 256,000 bytes, every offset distinguishable


@pytest.fixture
async def stored(tmp_path: Path) -> LocalStorage:
    source = tmp_path / "upload.bin"
    source.write_bytes(PAYLOAD)
    storage = LocalStorage(tmp_path / "objects")
    info = await storage.put_file("audio/1/book.mp3", source)
    assert info.size == len(PAYLOAD)
    return storage


async def _read(storage: LocalStorage, start: int = 0, end: int | None = None, chunk: int = 4096) -> bytes:
    return b"".join([part async for part in storage.read_range("audio/1/book.mp3", start, end, chunk)])


async def test_whole_read_returns_every_byte_in_bounded_chunks(stored: LocalStorage) -> None:
    sizes = [len(part) async for part in stored.read_range("audio/1/book.mp3", chunk_size=4096)]
    assert max(sizes) <= 4096
    assert await _read(stored) == PAYLOAD


@pytest.mark.parametrize(("start", "end"), [(0, 0), (10, 99), (4095, 4097), (255_000, None), (0, 255_999)])
async def test_ranged_read_returns_exactly_the_range(stored: LocalStorage, start: int, end: int | None) -> None:
    expected = PAYLOAD[start:] if end is None else PAYLOAD[start : end + 1]
    assert await _read(stored, start, end) == expected


async def test_reads_the_page_cache_cannot_answer_still_return_exactly_the_range(
    stored: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cold file: the kernel refuses every non-blocking read, so each chunk comes from a thread.
    def would_block(*_args: object) -> int:
        raise BlockingIOError(errno.EAGAIN, "not in the page cache")

    monkeypatch.setattr(os, "preadv", would_block)
    assert await _read(stored, 4095, 200_000) == PAYLOAD[4095:200_001]
    assert await _read(stored) == PAYLOAD


async def test_stat_changes_etag_when_the_object_changes(stored: LocalStorage, tmp_path: Path) -> None:
    before = await stored.stat("audio/1/book.mp3")
    replacement = tmp_path / "new.bin"
    replacement.write_bytes(b"different")
    after = await stored.put_file("audio/1/book.mp3", replacement)
    assert after.size == 9
    assert after.etag != before.etag
    assert not list((tmp_path / "objects").rglob("*.partial"))


async def test_missing_objects_and_delete(stored: LocalStorage) -> None:
    await stored.delete("audio/1/book.mp3")
    await stored.delete("audio/1/book.mp3")  # deleting twice is fine
    with pytest.raises(ObjectNotFound):
        await stored.stat("audio/1/book.mp3")
    with pytest.raises(ObjectNotFound):
        await _read(stored)


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../outside", "audio/../../outside"])
def test_keys_cannot_leave_the_root(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        LocalStorage(tmp_path).path_for(key)


async def test_check_fails_when_the_root_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError):
        await LocalStorage(blocker / "storage").check()

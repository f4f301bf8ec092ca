"""The same storage behaviour from the local directory and from S3 (a real moto server over HTTP)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from audioverse.app import create_app
from audioverse.config import Settings
from audioverse.storage import LocalStorage, ObjectNotFound, S3Storage, Storage
from tests.accounts.test_auth_flow import bearer
from tests.audio_fixtures import m4b_with_chapters, mp3_with_chapters
from tests.catalog.fixtures import Tokens
from tests.services import moto_s3_settings

PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)  # above the small multipart threshold used below


def s3_storage(endpoint: str, bucket: str) -> S3Storage:
    return S3Storage(
        bucket, endpoint_url=endpoint, region="us-east-1", access_key="test", secret_key="test",
        multipart_threshold=1024 * 1024, multipart_chunk=5 * 1024 * 1024,
    )  # fmt: skip


@pytest.fixture(params=["local", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "local":
        yield LocalStorage(tmp_path / "objects")
        return
    endpoint: str = request.getfixturevalue("s3_endpoint")
    s3 = s3_storage(endpoint, f"contract-{secrets.token_hex(4)}")
    await s3.ensure_bucket()
    yield s3


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "upload.bin"
    path.write_bytes(PAYLOAD)
    return path


async def read(storage: Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in storage.read_range(key, start, end, 64 * 1024)])


async def test_put_stat_read_delete(storage: Storage, source: Path) -> None:
    info = await storage.put_file("books/1/audio.mp3", source, "audio/mpeg")
    assert info.size == len(PAYLOAD)
    assert info.etag
    assert await read(storage, "books/1/audio.mp3") == PAYLOAD
    for start, end in [(0, 0), (100, 199), (1024 * 1024 - 5, 1024 * 1024 + 5), (len(PAYLOAD) - 10, None)]:
        expected = PAYLOAD[start:] if end is None else PAYLOAD[start : end + 1]
        assert await read(storage, "books/1/audio.mp3", start, end) == expected
    chunks = [len(c) async for c in storage.read_range("books/1/audio.mp3", chunk_size=64 * 1024)]
    assert max(chunks) <= 64 * 1024
    await storage.delete("books/1/audio.mp3")
    await storage.delete("books/1/audio.mp3")
    with pytest.raises(ObjectNotFound):
        await storage.stat("books/1/audio.mp3")
    with pytest.raises(ObjectNotFound):
        await read(storage, "books/1/audio.mp3")
    await storage.check()


async def test_presigned_urls_serve_the_object_and_its_ranges(s3_endpoint: str, source: Path) -> None:
    s3 = s3_storage(s3_endpoint, f"presign-{secrets.token_hex(4)}")
    await s3.ensure_bucket()
    await s3.put_file("a/b.mp3", source, "audio/mpeg")
    url = await s3.presigned_url("a/b.mp3", 60, "audio/mpeg")
    async with httpx.AsyncClient() as client:
        whole = await client.get(url)
        part = await client.get(url, headers={"Range": "bytes=10-19"})
    assert whole.content == PAYLOAD
    assert whole.headers["content-type"] == "audio/mpeg"
    assert part.status_code == 206
    assert part.content == PAYLOAD[10:20]


async def test_a_missing_bucket_fails_the_check(s3_endpoint: str) -> None:
    with pytest.raises(Exception):  # noqa: PT011 - botocore's ClientError, whatever its code
        await s3_storage(s3_endpoint, "no-such-bucket").check()


async def test_streams_redirect_to_s3_or_proxy_it(
    settings: Settings, s3_endpoint: str, uploader: Tokens, tmp_path: Path
) -> None:
    bucket = f"api-{secrets.token_hex(4)}"
    await s3_storage(s3_endpoint, bucket).ensure_bucket()
    on_s3 = msgspec.structs.replace(
        settings,
        **moto_s3_settings(s3_endpoint, bucket),
        # Its own index: the embedded engine allows one writer, and the fixture's app is running too.
        search_dir=tmp_path / "search",
        # Its jobs (the storage deletes) run in-process: the session's worker keeps the profile's own
        # storage, so it could not delete from this bucket. The app waits for them as it stops.
        redis_url=None,
    )
    audio = mp3_with_chapters(tmp_path).path.read_bytes()
    async with AsyncTestClient(create_app(on_s3)) as client:
        created = await client.post("/api/audiobooks/", headers=bearer(uploader), files={"audio": ("a.mp3", audio)})
        assert created.status_code == 201, created.text
        book_id = created.json()["id"]
        # What the file says arrives the same way whichever storage keeps it.
        assert [c["title"] for c in created.json()["chapters"]] == ["Opening", "The Storm", "Landfall"]
        assert abs(created.json()["duration_seconds"] - 12.0) <= 0.1
        m4b = await client.post(
            "/api/audiobooks/",
            headers=bearer(uploader),
            files={"audio": ("b.m4b", m4b_with_chapters(tmp_path).path.read_bytes())},
        )
        assert m4b.status_code == 201, m4b.text
        assert [c["start_time_seconds"] for c in m4b.json()["chapters"]] == [0.0, 4.0, 8.5]
        assert (
            await client.delete(f"/api/audiobooks/{m4b.json()['id']}/", headers=bearer(uploader))
        ).status_code == 204
        redirect = await client.get(
            f"/api/audiobooks/{book_id}/stream/", headers=bearer(uploader), follow_redirects=False
        )
        assert redirect.status_code == 302, redirect.text
        assert (await client.get("/api/ready")).json()["checks"]["storage"] == "ok"
    assert redirect.status_code == 302
    async with httpx.AsyncClient() as direct:
        fetched = await direct.get(redirect.headers["location"], headers={"Range": "bytes=0-99"})
    assert fetched.content == audio[:100]
    proxied_settings = msgspec.structs.replace(on_s3, s3_stream_mode="proxy")
    async with AsyncTestClient(create_app(proxied_settings)) as client:
        proxied = await client.get(
            f"/api/audiobooks/{book_id}/stream/", headers={**bearer(uploader), "Range": "bytes=100-199"}
        )
        deleted = await client.delete(f"/api/audiobooks/{book_id}/", headers=bearer(uploader))
    assert proxied.status_code == 206
    assert proxied.content == audio[100:200]
    assert deleted.status_code == 204
    objects = s3_storage(s3_endpoint, bucket)
    async with objects._client() as s3:
        listing = await s3.list_objects_v2(Bucket=bucket)
    assert listing.get("KeyCount", 0) == 0

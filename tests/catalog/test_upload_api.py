"""Uploads: metadata read from real files, form fields win, and every refusal leaves nothing behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from audioverse.app import create_app
from audioverse.catalog.models import Audiobook
from audioverse.config import Settings
from audioverse.db import sqlalchemy_config
from tests.accounts.test_auth_flow import bearer
from tests.audio_fixtures import m4b_with_chapters, mp3_with_chapters, plain, png_cover
from tests.catalog.fixtures import Tokens
from tests.services import until

Client = AsyncTestClient[Litestar]


def stored_files(settings: Settings) -> set[Path]:
    root = settings.resolved_storage_dir / "audiobooks"
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


async def book_count(settings: Settings) -> int:
    database = sqlalchemy_config(settings)
    async with database.get_session() as session:
        count = await session.scalar(select(func.count()).select_from(Audiobook)) or 0
    await database.get_engine().dispose()
    return count


async def upload(client: Client, tokens: Tokens, audio: tuple[str, bytes], **form: Any) -> Any:
    files: dict[str, Any] = {"audio": (audio[0], audio[1], "application/octet-stream")}
    if "cover" in form:
        files["cover"] = ("cover.png", form.pop("cover"), "image/png")
    return await client.post("/api/audiobooks/", headers=bearer(tokens), data=form, files=files)


async def test_mp3_upload_reads_the_file(client: Client, uploader: Tokens, tmp_path: Path) -> None:
    expected = mp3_with_chapters(tmp_path)
    response = await upload(client, uploader, ("anything.bin", expected.path.read_bytes()), language="en")
    assert response.status_code == 201, response.text
    book = response.json()
    assert book["title"] == "The Sea Wolf"
    assert [a["name"] for a in book["authors"]] == ["Jack London"]
    assert [n["name"] for n in book["narrators"]] == ["Ada Reader"]
    assert [g["slug"] for g in book["genres"]] == ["adventure"]
    assert book["release_date"] == "1904-01-01"
    assert book["format"] == "mp3"
    assert book["mime_type"] == "audio/mpeg"
    assert abs(book["duration_seconds"] - 12.0) <= 0.1
    assert book["bitrate"] > 0
    assert book["size_bytes"] == expected.path.stat().st_size
    assert [(c["title"], c["start_time_seconds"]) for c in book["chapters"]] == [
        ("Opening", 0.0), ("The Storm", 4.0), ("Landfall", 8.5),
    ]  # fmt: skip
    cover = await client.get(book["cover_url"])
    assert cover.status_code == 200
    assert cover.headers["content-type"] == "image/png"
    stream = await client.get(
        f"/api/audiobooks/{book['id']}/stream/", headers={**bearer(uploader), "Range": "bytes=0-9"}
    )
    assert stream.content == expected.path.read_bytes()[:10]


async def test_m4b_upload_and_form_fields_win(client: Client, uploader: Tokens, tmp_path: Path) -> None:
    expected = m4b_with_chapters(tmp_path)
    response = await upload(
        client,
        uploader,
        ("book.m4b", expected.path.read_bytes()),
        title="Le Tour du monde en quatre-vingts jours",
        authors="Jules Verne, Michel Verne",
        narrators="Claire Voix",
        genres="Classics",
        language="fr",
        isbn="9780140449068",
        series="Voyages extraordinaires",
        series_position="11",
        cover=png_cover(),
    )
    assert response.status_code == 201, response.text
    book = response.json()
    assert book["title"] == "Le Tour du monde en quatre-vingts jours"
    assert [a["name"] for a in book["authors"]] == ["Jules Verne", "Michel Verne"]
    assert [n["name"] for n in book["narrators"]] == ["Claire Voix"]
    assert book["format"] == "m4b"
    assert book["language"] == "fr"
    assert book["series_position"] == 11
    assert [c["title"] for c in book["chapters"]] == ["Opening", "The Storm", "Landfall"]
    assert book["cover_url"]


async def test_a_file_without_chapters_gets_one(client: Client, uploader: Tokens, tmp_path: Path) -> None:
    path = plain(tmp_path, "flac", ["-c:a", "flac"])
    response = await upload(client, uploader, ("x.flac", path.read_bytes()), title="Short", authors="Someone")
    assert response.status_code == 201, response.text
    chapters = response.json()["chapters"]
    assert len(chapters) == 1
    assert chapters[0]["start_time_seconds"] == 0
    assert abs(chapters[0]["end_time_seconds"] - 5.0) <= 0.1


@pytest.mark.parametrize(
    ("name", "content", "form", "status"),
    [
        ("text.mp3", b"Just some text, renamed to look like audio.\n" * 100, {}, 422),
        ("empty.mp3", b"", {}, 422),
        ("archive.m4b", b"PK\x03\x04" + b"\x00" * 200, {}, 422),
        ("random.mp3", bytes(range(256)) * 40, {}, 422),
    ],
)
async def test_malformed_uploads_leave_nothing(
    client: Client, uploader: Tokens, settings: Settings, name: str, content: bytes, form: dict[str, str], status: int
) -> None:
    before_files, before_books = stored_files(settings), await book_count(settings)
    response = await upload(client, uploader, (name, content), **form)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["field"] == "audio"
    assert stored_files(settings) == before_files
    assert await book_count(settings) == before_books


async def test_truncated_m4b_is_refused(client: Client, uploader: Tokens, settings: Settings, tmp_path: Path) -> None:
    data = m4b_with_chapters(tmp_path).path.read_bytes()
    before = stored_files(settings)
    response = await upload(client, uploader, ("cut.m4b", data[: len(data) // 2]), title="Cut", authors="A")
    assert response.status_code == 422
    assert stored_files(settings) == before


@pytest.mark.parametrize(
    "form",
    [{"isbn": "12"}, {"release_date": "someday"}, {"language": "not a language"}, {"shelf": "unknown field"}],
)
async def test_wrong_form_fields_are_422(
    client: Client, uploader: Tokens, settings: Settings, tmp_path: Path, form: dict[str, str]
) -> None:
    before = stored_files(settings)
    response = await upload(client, uploader, ("a.mp3", mp3_with_chapters(tmp_path).path.read_bytes()), **form)
    assert response.status_code == 422, response.text
    assert stored_files(settings) == before


async def test_missing_audio_and_bad_cover(
    client: Client, uploader: Tokens, tmp_path: Path, settings: Settings
) -> None:
    missing = await client.post("/api/audiobooks/", headers=bearer(uploader), data={"title": "No file"})
    assert missing.status_code in {400, 422}
    before = stored_files(settings)
    bad_cover = await upload(
        client, uploader, ("a.mp3", mp3_with_chapters(tmp_path).path.read_bytes()), cover=b"not an image"
    )
    assert bad_cover.status_code == 422
    assert bad_cover.json()["errors"][0]["field"] == "cover"
    assert stored_files(settings) == before


async def test_a_failure_after_storage_removes_the_stored_file(
    client: Client, uploader: Tokens, settings: Settings, tmp_path: Path
) -> None:
    audio = ("a.mp3", mp3_with_chapters(tmp_path).path.read_bytes())
    first = await upload(client, uploader, audio, isbn="9780000000019")
    assert first.status_code == 201
    before_files, before_books = stored_files(settings), await book_count(settings)
    duplicate = await upload(client, uploader, audio, isbn="9780000000019")
    assert duplicate.status_code == 409
    assert stored_files(settings) == before_files
    assert await book_count(settings) == before_books


async def test_who_may_upload(client: Client, unverified: Tokens, tmp_path: Path) -> None:
    audio = mp3_with_chapters(tmp_path).path.read_bytes()
    anonymous = await client.post("/api/audiobooks/", files={"audio": ("a.mp3", audio)})
    assert anonymous.status_code == 401
    refused = await upload(client, unverified, ("a.mp3", audio))
    assert refused.status_code == 403


async def test_over_the_size_limit_is_413(settings: Settings, uploader: Tokens, tmp_path: Path) -> None:
    small = msgspec.structs.replace(settings, max_upload_bytes=10_000)
    audio = mp3_with_chapters(tmp_path).path.read_bytes()
    assert len(audio) > 10_000
    before = stored_files(settings)
    async with AsyncTestClient(create_app(small)) as client:
        response = await upload(client, uploader, ("a.mp3", audio))
        huge = await client.post(
            "/api/audiobooks/", headers={**bearer(uploader), "Content-Length": str(10**12)}, content=b""
        )
    assert response.status_code == 413
    assert huge.status_code == 413
    assert stored_files(settings) == before


async def test_delete_removes_the_stored_objects(
    client: Client, uploader: Tokens, settings: Settings, tmp_path: Path
) -> None:
    created = await upload(
        client, uploader, ("a.mp3", mp3_with_chapters(tmp_path).path.read_bytes()), cover=png_cover()
    )
    book_id = created.json()["id"]
    files = stored_files(settings)
    assert (await client.delete(f"/api/audiobooks/{book_id}/", headers=bearer(uploader))).status_code == 204

    async def audio_and_cover_gone() -> bool:
        # A job removes them once the delete has committed.
        return len(files - stored_files(settings)) == 2

    await until(audio_and_cover_gone, 15)

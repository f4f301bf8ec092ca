"""Turning an uploaded audio file plus form fields into a stored audiobook, or into nothing at all."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

import anyio
import msgspec
from litestar.datastructures import UploadFile

from audioverse.accounts.models import User
from audioverse.bodies import body_field_error
from audioverse.catalog.audio_metadata import AudioMetadata, UnreadableAudio, read_audio_metadata_async
from audioverse.catalog.models import Audiobook, Chapter
from audioverse.catalog.schemas import AudiobookDetail, AudiobookUpdate
from audioverse.catalog.services import AudiobookService
from audioverse.errors import DomainError, FieldError, Unprocessable
from audioverse.storage import Storage
from audioverse.uploads import identify_image_async, required_file, save_upload

LIST_FIELDS = ("authors", "narrators", "genres")
TEXT_FIELDS = (
    "title",
    "subtitle",
    "description",
    "language",
    "release_date",
    "publisher",
    "isbn",
    "series",
    "series_position",
)
UNDETERMINED_LANGUAGE = "und"  # BCP 47's code for "not known"


def form_metadata(form: Mapping[str, Any]) -> AudiobookUpdate:
    """The metadata form fields, validated like an edit; names repeat or are comma-separated."""
    unknown = set(form) - {"audio", "cover", *LIST_FIELDS, *TEXT_FIELDS}
    if unknown:
        raise Unprocessable(
            "The form has fields this endpoint does not know.",
            errors=[FieldError(field=name, message="Unknown field.") for name in sorted(unknown)],
        )
    raw: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        value = form.get(name)
        if isinstance(value, list | UploadFile):
            raise Unprocessable(
                f"`{name}` must be given once, as text.",
                errors=[FieldError(field=name, message="Give this field once, as text.")],
            )
        if value is not None and value.strip():
            raw[name] = value.strip()
    for name in LIST_FIELDS:
        values = form.get(name)
        if values is None:
            continue
        items = values if isinstance(values, list) else [values]
        if any(isinstance(item, UploadFile) for item in items):
            raise Unprocessable(f"`{name}` must be text.", errors=[FieldError(field=name, message="Must be text.")])
        names = [part.strip() for item in items for part in item.split(",") if part.strip()]
        if names:
            raw[name] = names
    try:
        return msgspec.convert(raw, AudiobookUpdate, strict=False)
    except msgspec.ValidationError as exc:
        raise Unprocessable("The form has invalid fields.", errors=[body_field_error(exc)]) from exc


def _given(value: Any) -> Any:
    return None if value is msgspec.UNSET else value


def _release_date(form: AudiobookUpdate, tags: AudioMetadata) -> date | None:
    if form.release_date is not msgspec.UNSET:
        return form.release_date
    return tags.release_date


class UploadedBook:
    """Everything an upload stored, so a failure at any later step can remove it again."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.keys: list[str] = []

    async def put(self, key: str, path: Path, content_type: str) -> None:
        await self.storage.put_file(key, path, content_type)
        self.keys.append(key)

    async def discard(self) -> None:
        with anyio.CancelScope(shield=True):
            for key in self.keys:
                await self.storage.delete(key)


async def ingest(
    audiobooks: AudiobookService,
    storage: Storage,
    uploader: User,
    form: Mapping[str, Any],
    max_bytes: int,
    max_cover_bytes: int,
) -> AudiobookDetail:
    """Read the file, store audio and cover, and add the book; on any failure nothing remains.

    The book is committed here, before the response, so that a failed commit still removes the files.
    """
    session = audiobooks.repository.session
    metadata = form_metadata(form)
    audio = required_file(form.get("audio"), "audio", "audio file")
    cover_upload = form.get("cover")
    stored = UploadedBook(storage)
    prefix = f"audiobooks/{secrets.token_hex(12)}"
    with tempfile.TemporaryDirectory(prefix="audioverse-upload-") as scratch:
        audio_path = Path(scratch) / "audio"
        size = await save_upload(audio, audio_path, max_bytes, "audio")
        try:
            tags = await read_audio_metadata_async(audio_path)
        except UnreadableAudio as exc:
            raise Unprocessable(
                f"The audio file cannot be used: {exc.reason}",
                errors=[FieldError(field="audio", message=exc.reason)],
            ) from exc
        try:
            await stored.put(f"{prefix}/audio.{tags.format}", audio_path, tags.mime_type)
            cover_key = None
            if cover_upload is not None:
                cover_path = Path(scratch) / "cover"
                await save_upload(
                    required_file(cover_upload, "cover", "cover image"), cover_path, max_cover_bytes, "cover"
                )
                extension, content_type = await identify_image_async(cover_path, "cover")
                cover_key = f"{prefix}/cover.{extension}"
                await stored.put(cover_key, cover_path, content_type)
            elif tags.cover is not None:
                cover_path = Path(scratch) / "embedded-cover"
                await anyio.Path(cover_path).write_bytes(tags.cover.data)
                try:
                    extension, content_type = await identify_image_async(cover_path, "cover")
                except DomainError:
                    cover_key = None  # an unreadable embedded picture is not worth refusing the book
                else:
                    cover_key = f"{prefix}/cover.{extension}"
                    await stored.put(cover_key, cover_path, content_type)
            book = await _add_book(
                audiobooks, uploader, metadata, tags, audio.filename, size, stored.keys[0], cover_key
            )
            await session.commit()
        except BaseException:
            await session.rollback()
            await stored.discard()
            raise
    return await audiobooks.detail(book.id)


async def _add_book(
    audiobooks: AudiobookService,
    uploader: User,
    form: AudiobookUpdate,
    tags: AudioMetadata,
    filename: str,
    size: int,
    audio_key: str,
    cover_key: str | None,
) -> Audiobook:
    title = _given(form.title) or tags.title or Path(filename).stem or "Untitled"
    authors = _given(form.authors) or tags.authors
    if not authors:
        raise Unprocessable(
            "Name the author: the form has no `authors` and the file has no author tag.",
            errors=[FieldError(field="authors", message="At least one author is required.")],
        )
    related = await audiobooks.related(
        authors=authors,
        narrators=_given(form.narrators) or tags.narrators,
        genres=_given(form.genres) or tags.genres,
    )
    book = Audiobook(
        **related,
        title=title[:500],
        subtitle=_given(form.subtitle),
        description=_given(form.description) or tags.description or "",
        duration_seconds=round(tags.duration_seconds, 3),
        release_date=_release_date(form, tags),
        language=_given(form.language) or UNDETERMINED_LANGUAGE,
        publisher=_given(form.publisher),
        isbn=_given(form.isbn),
        series=_given(form.series),
        series_position=_given(form.series_position),
        format=tags.format,
        mime_type=tags.mime_type,
        size_bytes=size,
        bitrate=tags.bitrate,
        audio_key=audio_key,
        cover_key=cover_key,
        uploaded_by_id=uploader.id,
    )
    chapters = tags.chapters or []
    if chapters:
        book.chapters = [
            Chapter(
                chapter_number=number,
                title=chapter.title[:255] or f"Chapter {number}",
                start_time_seconds=round(chapter.start_seconds, 3),
                end_time_seconds=round(min(chapter.end_seconds, tags.duration_seconds), 3),
            )
            for number, chapter in enumerate(chapters, start=1)
        ]
    else:
        book.chapters = [
            Chapter(chapter_number=1, title=title[:255], start_time_seconds=0.0, end_time_seconds=book.duration_seconds)
        ]
    audiobooks.repository.session.add(book)
    await audiobooks.repository.session.flush()
    return book

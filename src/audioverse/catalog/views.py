"""Model-to-wire conversions of the catalog API, shared with the search index and other domains."""

from __future__ import annotations

from collections.abc import Sequence

from audioverse.catalog.models import Audiobook, Chapter
from audioverse.catalog.schemas import AudiobookRead, ChapterRead, GenreRef, PersonRef


def cover_url(book: Audiobook) -> str | None:
    if not book.cover_key:
        return None
    version = book.cover_key.rsplit("/", 2)[-2][:8]
    return f"/api/audiobooks/{book.id}/cover/?v={version}"


def audiobook_read(book: Audiobook) -> AudiobookRead:
    return AudiobookRead(
        id=book.id,
        title=book.title,
        subtitle=book.subtitle,
        description=book.description,
        cover_url=cover_url(book),
        duration_seconds=book.duration_seconds,
        release_date=book.release_date,
        language=book.language,
        publisher=book.publisher,
        isbn=book.isbn,
        series=book.series,
        series_position=book.series_position,
        authors=[PersonRef(id=author.id, name=author.name) for author in book.authors],
        narrators=[PersonRef(id=narrator.id, name=narrator.name) for narrator in book.narrators],
        genres=[GenreRef(id=genre.id, name=genre.name, slug=genre.slug) for genre in book.genres],
        average_rating=float(book.average_rating),
        total_ratings=book.total_ratings,
        total_reviews=book.total_reviews,
        play_count=book.play_count,
        format=book.format,
        mime_type=book.mime_type,
        size_bytes=book.size_bytes,
        bitrate=book.bitrate,
        uploaded_by=book.uploaded_by_id,
        created_at=book.created_at,
        updated_at=book.updated_at,
    )


def chapter_reads(chapters: Sequence[Chapter]) -> list[ChapterRead]:
    return [
        ChapterRead(
            chapter_number=chapter.chapter_number,
            title=chapter.title,
            start_time_seconds=chapter.start_time_seconds,
            end_time_seconds=chapter.end_time_seconds,
        )
        for chapter in chapters
    ]

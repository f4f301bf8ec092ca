"""Model-to-wire conversions of the catalog API that other domains share (listening shows books and chapters)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from audioverse.catalog.models import Audiobook, Chapter
from audioverse.catalog.schemas import AudiobookRead, ChapterRead


def audiobook_read(book: Audiobook) -> AudiobookRead:
    """The list form of ``book``, loaded with its authors, narrators and genres."""
    return msgspec.convert(book, AudiobookRead, from_attributes=True)


def chapter_reads(chapters: Sequence[Chapter]) -> list[ChapterRead]:
    return msgspec.convert(chapters, list[ChapterRead], from_attributes=True)

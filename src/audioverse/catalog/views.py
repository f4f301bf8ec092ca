"""Model-to-wire conversions of the catalog API that other domains share (listening shows chapters)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from audioverse.catalog.models import Chapter
from audioverse.catalog.schemas import ChapterRead


def chapter_reads(chapters: Sequence[Chapter]) -> list[ChapterRead]:
    return msgspec.convert(chapters, list[ChapterRead], from_attributes=True)

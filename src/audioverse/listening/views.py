"""Model-to-wire conversions of the listening API."""

from __future__ import annotations

from collections.abc import Sequence

from audioverse.catalog.models import Chapter
from audioverse.listening.models import ListeningProgress
from audioverse.listening.schemas import ProgressRead


def current_chapter(chapters: Sequence[Chapter], position: float) -> int | None:
    """The number of the chapter playing at ``position`` (chapters ordered by number)."""
    number = None
    for chapter in chapters:
        if chapter.start_time_seconds <= position:
            number = chapter.chapter_number
    return number


def progress_read(progress: ListeningProgress, chapters: Sequence[Chapter]) -> ProgressRead:
    return ProgressRead(
        audiobook_id=progress.audiobook_id,
        position_seconds=progress.position_seconds,
        is_completed=progress.is_completed,
        playback_speed=progress.playback_speed,
        current_chapter=current_chapter(chapters, progress.position_seconds),
        last_listened_at=progress.last_listened_at,
        updated_at=progress.updated_at,
    )

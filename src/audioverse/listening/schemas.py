"""Wire shapes of the listening API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from audioverse.accounts.schemas import PlaybackSpeed
from audioverse.catalog.schemas import AudiobookRead, ChapterRead
from audioverse.types import Text

Position = Annotated[float, msgspec.Meta(ge=0, description="Seconds from the start of the book.")]
SHELF_MAX_LENGTH = 60
Shelf = Annotated[Text, msgspec.Meta(min_length=1, max_length=SHELF_MAX_LENGTH)]


class ProgressWrite(msgspec.Struct, forbid_unknown_fields=True):
    position_seconds: Position
    playback_speed: PlaybackSpeed | None = None
    is_completed: bool | None = None
    client_updated_at: Annotated[
        datetime | None, msgspec.Meta(description="When the device reached this position, by its own clock.")
    ] = None
    client_sent_at: Annotated[
        datetime | None,
        msgspec.Meta(
            description="The device's clock when sending. With it an update queued offline is dated by its age "
            "on the device's own clock (`client_sent_at - client_updated_at`), so a wrong clock does not matter."
        ),
    ] = None
    device_id: Annotated[Text, msgspec.Meta(max_length=100)] | None = None


class ProgressRead(msgspec.Struct):
    audiobook_id: int
    position_seconds: float
    is_completed: bool
    playback_speed: float
    current_chapter: int | None
    last_listened_at: datetime
    updated_at: datetime


class Playback(msgspec.Struct):
    stream_url: str
    stream_url_expires_at: datetime
    mime_type: str
    duration_seconds: float
    chapters: list[ChapterRead]
    progress: ProgressRead | None
    playback_speed: float


class BookmarkWrite(msgspec.Struct, forbid_unknown_fields=True):
    position_seconds: Position
    title: Annotated[Text, msgspec.Meta(max_length=200)] = ""
    note: Annotated[Text, msgspec.Meta(max_length=2000)] = ""


class BookmarkPatch(msgspec.Struct, forbid_unknown_fields=True):
    position_seconds: Position | msgspec.UnsetType = msgspec.UNSET
    title: Annotated[Text, msgspec.Meta(max_length=200)] | msgspec.UnsetType = msgspec.UNSET
    note: Annotated[Text, msgspec.Meta(max_length=2000)] | msgspec.UnsetType = msgspec.UNSET


class BookmarkRead(msgspec.Struct):
    id: int
    audiobook_id: int
    position_seconds: float
    title: str
    note: str
    created_at: datetime
    updated_at: datetime


class LibraryAdd(msgspec.Struct, forbid_unknown_fields=True):
    shelf: Shelf | None = None


class LibraryItem(msgspec.Struct):
    audiobook: AudiobookRead
    added_at: datetime
    shelf: str | None
    is_favorite: bool
    progress: ProgressRead | None


class ListeningItem(msgspec.Struct):
    audiobook: AudiobookRead
    progress: ProgressRead

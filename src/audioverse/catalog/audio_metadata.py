"""PLACEHOLDER until the real reader lands (helper-2 replaces this file)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import msgspec


class UnreadableAudio(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ChapterInfo(msgspec.Struct):
    title: str
    start_seconds: float
    end_seconds: float


class CoverArt(msgspec.Struct):
    data: bytes
    mime_type: str


class AudioMetadata(msgspec.Struct):
    format: str
    mime_type: str
    duration_seconds: float
    bitrate: int
    title: str | None = None
    authors: list[str] = []
    narrators: list[str] = []
    genres: list[str] = []
    release_date: date | None = None
    description: str | None = None
    chapters: list[ChapterInfo] = []
    cover: CoverArt | None = None


def read_audio_metadata(path: Path) -> AudioMetadata:
    raise UnreadableAudio("placeholder")

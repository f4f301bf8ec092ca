"""Reading an uploaded file with mutagen: format, duration, bitrate, chapters, tags and cover art."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import anyio
import msgspec
import mutagen
from mutagen.flac import FLAC, Picture
from mutagen.id3 import ID3
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4, MP4Cover
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE

SUPPORTED = "MP3, M4A/M4B, Ogg/Opus, Ogg/Vorbis, FLAC or WAV"
NARRATOR_IN_TEXT = re.compile(r"\b(?:narrated|read|performed)\s+by\s+(?P<names>[^.;\n]+)", re.IGNORECASE)
VORBIS_CHAPTER = re.compile(r"^CHAPTER(?P<number>\d{2,3})$")


class UnreadableAudio(Exception):
    """The file is not readable audio of a supported format; ``reason`` says why, for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ChapterInfo(msgspec.Struct, frozen=True):
    title: str
    start_seconds: float
    end_seconds: float


class CoverArt(msgspec.Struct, frozen=True):
    data: bytes
    mime_type: str


class AudioMetadata(msgspec.Struct, frozen=True):
    """What the file says about itself; tags absent from the file are empty."""

    format: str
    mime_type: str
    duration_seconds: float
    bitrate: int
    title: str | None = None
    authors: list[str] = msgspec.field(default_factory=list)
    narrators: list[str] = msgspec.field(default_factory=list)
    genres: list[str] = msgspec.field(default_factory=list)
    release_date: date | None = None
    description: str | None = None
    chapters: list[ChapterInfo] = msgspec.field(default_factory=list)
    """Empty when the file has none; the caller then makes one chapter spanning the whole file."""
    cover: CoverArt | None = None


def _texts(values: Iterable[Any] | None) -> list[str]:
    names: list[str] = []
    for value in values or []:
        for part in re.split(r"\s*[;/]\s*|\x00", str(value)):
            if part.strip() and part.strip() not in names:
                names.append(part.strip())
    return names


def _first(values: Iterable[Any] | None) -> str | None:
    texts = _texts(values)
    return texts[0] if texts else None


def _date(value: str | None) -> date | None:
    match = re.match(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?", value or "")
    if not match:
        return None
    year, month, day = int(match[1]), int(match[2] or 1), int(match[3] or 1)
    try:
        return date(year, month, day)
    except ValueError:
        return date(year, 1, 1)


def _narrators_in(texts: Sequence[str]) -> list[str]:
    found: list[str] = []
    for text in texts:
        if match := NARRATOR_IN_TEXT.search(text):
            found += _texts(re.split(r",|\band\b", match["names"]))
    return found


def _close_chapters(starts: Sequence[tuple[float, str]], duration: float) -> list[ChapterInfo]:
    """Chapters from (start, title) pairs: each ends where the next starts, the last at the end."""
    ordered = sorted((start, title) for start, title in starts if 0 <= start < duration)
    return [
        ChapterInfo(
            title=title or f"Chapter {index + 1}",
            start_seconds=round(start, 3),
            end_seconds=round(ordered[index + 1][0] if index + 1 < len(ordered) else duration, 3),
        )
        for index, (start, title) in enumerate(ordered)
    ]


def _id3_fields(tags: ID3 | None, duration: float) -> dict[str, Any]:
    if tags is None:
        return {}
    comments = [str(frame) for frame in tags.getall("COMM")]
    narrators = _texts(tags.get("TCOM")) + _texts(tags.get("TXXX:NARRATOR")) + _narrators_in(comments)
    chapters = {frame.element_id: frame for frame in tags.getall("CHAP")}
    order: list[str] = []
    for toc in tags.getall("CTOC"):
        order += [element for element in toc.child_element_ids if element in chapters and element not in order]
    frames = [chapters[element] for element in order] or sorted(chapters.values(), key=lambda f: f.start_time)
    starts = [(frame.start_time / 1000, _first(frame.sub_frames.get("TIT2")) or "") for frame in frames]
    pictures = tags.getall("APIC")
    return {
        "title": _first(tags.get("TIT2")),
        "authors": _texts(tags.get("TPE1")) or _texts(tags.get("TPE2")),
        "narrators": list(dict.fromkeys(narrators)),
        "genres": _texts(tags.get("TCON")),
        "release_date": _date(_first(tags.get("TDRC")) or _first(tags.get("TYER"))),
        "description": next((text for text in comments if not NARRATOR_IN_TEXT.search(text)), None),
        "chapters": _close_chapters(starts, duration),
        "cover": CoverArt(data=pictures[0].data, mime_type=pictures[0].mime) if pictures else None,
    }


def _mp4_fields(audio: MP4, duration: float) -> dict[str, Any]:
    tags: Any = audio.tags or {}
    comments = _texts(tags.get("\xa9cmt")) + _texts(tags.get("desc"))
    covers = tags.get("covr") or []
    cover = None
    if covers:
        mime = "image/png" if covers[0].imageformat == MP4Cover.FORMAT_PNG else "image/jpeg"
        cover = CoverArt(data=bytes(covers[0]), mime_type=mime)
    chapters = [(chapter.start, chapter.title or "") for chapter in (audio.chapters or [])]
    return {
        "title": _first(tags.get("\xa9nam")),
        "authors": _texts(tags.get("\xa9ART")) or _texts(tags.get("aART")),
        "narrators": list(dict.fromkeys(_texts(tags.get("\xa9wrt")) + _narrators_in(comments))),
        "genres": _texts(tags.get("\xa9gen")),
        "release_date": _date(_first(tags.get("\xa9day"))),
        "description": next((text for text in comments if not NARRATOR_IN_TEXT.search(text)), None),
        "chapters": _close_chapters(chapters, duration),
        "cover": cover,
    }


def _vorbis_fields(audio: Any, duration: float) -> dict[str, Any]:
    tags: dict[str, list[str]] = {key.upper(): values for key, values in (audio.tags or {}).items()}
    comments = _texts(tags.get("DESCRIPTION")) + _texts(tags.get("COMMENT"))
    starts = []
    for key, values in tags.items():
        if (match := VORBIS_CHAPTER.match(key)) and values:
            clock = re.match(r"^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$", values[0])
            if clock:
                seconds = int(clock[1]) * 3600 + int(clock[2]) * 60 + float(clock[3])
                starts.append((seconds, _first(tags.get(f"CHAPTER{match['number']}NAME")) or ""))
    pictures = list(getattr(audio, "pictures", []))
    for encoded in tags.get("METADATA_BLOCK_PICTURE", []):
        pictures.append(Picture(base64.b64decode(encoded)))
    narrators = (
        _texts(tags.get("NARRATOR")) + _texts(tags.get("READER")) + _texts(tags.get("PERFORMER"))
        + _texts(tags.get("COMPOSER")) + _narrators_in(comments)
    )  # fmt: skip
    return {
        "title": _first(tags.get("TITLE")),
        "authors": _texts(tags.get("AUTHOR")) or _texts(tags.get("ARTIST")),
        "narrators": list(dict.fromkeys(narrators)),
        "genres": _texts(tags.get("GENRE")),
        "release_date": _date(_first(tags.get("DATE"))),
        "description": next((text for text in comments if not NARRATOR_IN_TEXT.search(text)), None),
        "chapters": _close_chapters(starts, duration),
        "cover": CoverArt(data=pictures[0].data, mime_type=pictures[0].mime) if pictures else None,
    }


def read_audio_metadata(path: Path) -> AudioMetadata:
    """Read ``path`` by its bytes (never its name); :class:`UnreadableAudio` when it cannot be used."""
    if path.stat().st_size == 0:
        raise UnreadableAudio("The file is empty.")
    try:
        audio = mutagen.File(path)
    except mutagen.MutagenError as exc:
        raise UnreadableAudio(f"The file is not readable audio, or it is damaged or cut short ({exc}).") from exc
    if audio is None or audio.info is None:
        raise UnreadableAudio(f"The file is not audio in a supported format ({SUPPORTED}).")
    if isinstance(audio, MP3) and getattr(audio.info, "sketchy", False):
        raise UnreadableAudio(f"The file does not look like valid MP3 audio; upload a whole {SUPPORTED} file.")
    duration = float(getattr(audio.info, "length", 0.0) or 0.0)
    if duration <= 0:
        raise UnreadableAudio("The file has no playable audio (its duration is zero).")
    bitrate = int(getattr(audio.info, "bitrate", 0) or 0) or int(path.stat().st_size * 8 / duration)
    fields: dict[str, Any]
    if isinstance(audio, MP3):
        kind, mime, fields = "mp3", "audio/mpeg", _id3_fields(audio.tags, duration)
    elif isinstance(audio, MP4):
        fields = _mp4_fields(audio, duration)
        kind, mime = ("m4b" if fields["chapters"] else "m4a"), "audio/mp4"
    elif isinstance(audio, OggOpus):
        kind, mime, fields = "opus", "audio/ogg", _vorbis_fields(audio, duration)
    elif isinstance(audio, OggVorbis):
        kind, mime, fields = "ogg", "audio/ogg", _vorbis_fields(audio, duration)
    elif isinstance(audio, FLAC):
        kind, mime, fields = "flac", "audio/flac", _vorbis_fields(audio, duration)
    elif isinstance(audio, WAVE):
        kind, mime, fields = "wav", "audio/wav", _id3_fields(audio.tags, duration)
    else:
        raise UnreadableAudio(f"{type(audio).__name__} audio is not supported; upload {SUPPORTED}.")
    return AudioMetadata(format=kind, mime_type=mime, duration_seconds=round(duration, 3), bitrate=bitrate, **fields)


async def read_audio_metadata_async(path: Path) -> AudioMetadata:
    """:func:`read_audio_metadata` off the event loop (mutagen blocks on file reads)."""
    return await anyio.to_thread.run_sync(read_audio_metadata, path)

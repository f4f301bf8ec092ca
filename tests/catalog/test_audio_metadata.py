"""The reader gets duration, bitrate, chapters and tags right, and refuses what is not audio."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from audioverse.catalog.audio_metadata import UnreadableAudio, read_audio_metadata
from tests.audio_fixtures import Expected, m4b_with_chapters, mp3_with_chapters, plain


@pytest.mark.parametrize("make", [mp3_with_chapters, m4b_with_chapters])
def test_chaptered_books(tmp_path: Path, make: object) -> None:
    expected: Expected = make(tmp_path)  # type: ignore[operator]
    metadata = read_audio_metadata(expected.path)
    assert metadata.format == expected.format
    assert abs(metadata.duration_seconds - expected.duration) <= 0.1
    assert 16_000 <= metadata.bitrate <= 400_000
    assert [c.title for c in metadata.chapters] == [c[0] for c in expected.chapters]
    for chapter, (_, start, _end) in zip(metadata.chapters, expected.chapters, strict=True):
        assert abs(chapter.start_seconds - start) <= 0.010
    assert abs(metadata.chapters[-1].end_seconds - metadata.duration_seconds) <= 0.010
    assert metadata.title == expected.title
    assert metadata.authors == expected.authors
    assert metadata.narrators == expected.narrators
    assert metadata.genres == expected.genres
    assert metadata.release_date is not None
    assert metadata.release_date.year == expected.year
    assert (metadata.cover is not None) == expected.has_cover


@pytest.mark.parametrize(
    ("extension", "codec", "kind"),
    [
        ("flac", ["-c:a", "flac"], "flac"),
        ("wav", ["-c:a", "pcm_s16le"], "wav"),
        ("opus", ["-c:a", "libopus", "-b:a", "32k"], "opus"),
        ("ogg", ["-c:a", "libvorbis"], "ogg"),
    ],
)
def test_other_formats(tmp_path: Path, extension: str, codec: list[str], kind: str) -> None:
    metadata = read_audio_metadata(plain(tmp_path, extension, codec))
    assert metadata.format == kind
    assert abs(metadata.duration_seconds - 5.0) <= 0.1
    assert metadata.chapters == []


def _zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("book.txt", "not audio")
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda d: (d / "a.mp3").write_text("This is a text file pretending to be an MP3.\n" * 50) and d / "a.mp3",
            "not readable audio",
        ),
        (lambda d: (d / "e.mp3").write_bytes(b"") or d / "e.mp3", "empty"),
        (lambda d: _zip(d / "z.m4b"), "not (readable )?audio"),
    ],
)
def test_malformed_files_are_refused_with_a_reason(tmp_path: Path, make: object, reason: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(UnreadableAudio, match=reason):
        read_audio_metadata(path)


def test_a_truncated_m4b_is_refused(tmp_path: Path) -> None:
    book = m4b_with_chapters(tmp_path).path
    data = book.read_bytes()
    truncated = tmp_path / "cut.m4b"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableAudio):
        read_audio_metadata(truncated)

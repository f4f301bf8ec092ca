"""Real audio files for tests, made with the ffmpeg that imageio-ffmpeg bundles, tagged with mutagen."""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import imageio_ffmpeg
from mutagen.id3 import APIC, CHAP, COMM, CTOC, ID3, TCON, TDRC, TIT2, TPE1, CTOCFlags
from PIL import Image

CHAPTERS = [("Opening", 0.0, 4.0), ("The Storm", 4.0, 8.5), ("Landfall", 8.5, 12.0)]
DURATION = 12.0


@dataclass
class Expected:
    path: Path
    format: str
    duration: float
    chapters: list[tuple[str, float, float]] = field(default_factory=list)
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    narrators: list[str] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    year: int | None = None
    has_cover: bool = False


def png_cover() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (20, 90, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


def ffmpeg(*arguments: str) -> None:
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *arguments], check=True
    )


def tone(seconds: float = DURATION) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]


def mp3_with_chapters(directory: Path) -> Expected:
    path = directory / "book.mp3"
    ffmpeg(*tone(), "-ac", "1", "-c:a", "libmp3lame", "-b:a", "64k", str(path))
    tags = ID3()
    tags.add(TIT2(encoding=3, text=["The Sea Wolf"]))
    tags.add(TPE1(encoding=3, text=["Jack London"]))
    tags.add(TCON(encoding=3, text=["Adventure"]))
    tags.add(TDRC(encoding=3, text=["1904"]))
    tags.add(COMM(encoding=3, lang="eng", desc="", text=["Narrated by Ada Reader"]))
    tags.add(APIC(encoding=3, mime="image/png", type=3, desc="cover", data=png_cover()))
    for index, (title, start, end) in enumerate(CHAPTERS):
        tags.add(CHAP(element_id=f"c{index}", start_time=int(start * 1000), end_time=int(end * 1000),
                      sub_frames=[TIT2(encoding=3, text=[title])]))  # fmt: skip
    tags.add(CTOC(element_id="toc", flags=CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED,
                  child_element_ids=[f"c{i}" for i in range(len(CHAPTERS))], sub_frames=[]))  # fmt: skip
    tags.save(path)
    return Expected(
        path, "mp3", DURATION, CHAPTERS, "The Sea Wolf", ["Jack London"], ["Ada Reader"], ["Adventure"], 1904, True
    )


def m4b_with_chapters(directory: Path) -> Expected:
    metadata = directory / "metadata.txt"
    lines = [";FFMETADATA1", "title=Around the World in Eighty Days", "artist=Jules Verne",
             "composer=Basil Narrator", "genre=Travel", "date=1872"]  # fmt: skip
    for title, start, end in CHAPTERS:
        lines += [
            "[CHAPTER]",
            "TIMEBASE=1/1000",
            f"START={int(start * 1000)}",
            f"END={int(end * 1000)}",
            f"title={title}",
        ]
    metadata.write_text("\n".join(lines) + "\n")
    path = directory / "book.m4b"
    ffmpeg(*tone(), "-i", str(metadata), "-map", "0:a", "-map_metadata", "1", "-map_chapters", "1",
           "-ac", "1", "-c:a", "aac", "-b:a", "64k", "-f", "mp4", str(path))  # fmt: skip
    return Expected(
        path, "m4b", DURATION, CHAPTERS, "Around the World in Eighty Days", ["Jules Verne"], ["Basil Narrator"],
        ["Travel"], 1872,
    )  # fmt: skip


def plain(directory: Path, extension: str, codec: list[str]) -> Path:
    path = directory / f"plain.{extension}"
    ffmpeg(*tone(5.0), "-ac", "1", *codec, str(path))
    return path

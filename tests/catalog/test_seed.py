"""The demo catalog: real chaptered MP3s whose tags match the rows, people shared across books."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from mutagen.id3 import ID3
from mutagen.mp3 import MP3
from sqlalchemy import func, select

from audioverse.catalog.models import Audiobook, Author, Chapter
from audioverse.catalog.seed import CATALOG_FILE, OWN_FILE_LIMIT, DemoSeeder, chapter_plan, scaled_entries
from audioverse.config import Settings
from audioverse.db import migrate_to_head, sqlalchemy_config
from audioverse.storage import LocalStorage

FIXED_GENRES = {
    "Classics", "Romance", "Adventure", "Mystery", "Science Fiction", "Fantasy", "Horror", "Historical Fiction",
    "Philosophy", "Poetry", "Children's", "Short Stories", "Drama", "Biography", "History", "Satire", "Gothic",
    "Travel", "Religion", "Science",
}  # fmt: skip


def test_the_curated_list_is_big_and_varied() -> None:
    entries = json.loads(CATALOG_FILE.read_text())
    assert len(entries) >= 200
    assert len({author for entry in entries for author in entry["authors"]}) >= 80
    assert len({entry["language"] for entry in entries}) >= 5
    assert {genre for entry in entries for genre in entry["genres"]} <= FIXED_GENRES
    assert sum(1 for entry in entries if entry["series"]) >= 24
    assert all(entry["year"] < 1929 for entry in entries)


def test_scaling_past_the_list_numbers_volumes() -> None:
    entries = list(scaled_entries(1000))
    assert len({entry["title"] for entry in entries}) == 1000
    assert entries[-1]["series_position"] is not None


def test_chapters_cover_the_whole_file() -> None:
    plan = chapter_plan(61.5, 4)
    assert plan[0][1] == 0
    assert plan[-1][2] == 61.5
    assert all(a[2] == b[1] for a, b in itertools.pairwise(plan))


async def test_seeded_books_have_real_chaptered_audio(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    database = sqlalchemy_config(settings)
    await migrate_to_head(database)
    storage = LocalStorage(tmp_path / "storage")
    progress: list[int] = []
    async with database.get_session() as session:
        seeder = DemoSeeder(session, storage, progress=progress.append)
        assert await seeder.is_empty()
        assert await seeder.seed(6, batch_size=4) == 6
        assert progress == [4, 6]
        assert not await seeder.is_empty()
        book = (await session.scalars(select(Audiobook).order_by(Audiobook.id))).first()
        assert book is not None
        chapters = (await session.scalars(select(Chapter).where(Chapter.audiobook_id == book.id))).all()
        authors = await session.scalar(select(func.count()).select_from(Author))
    await database.get_engine().dispose()
    audio = storage.path_for(book.audio_key)
    mp3 = MP3(audio)
    assert abs(mp3.info.length - book.duration_seconds) < 0.1
    tags = ID3(audio)
    assert str(tags["TIT2"]) == book.title
    chap_frames = sorted(tags.getall("CHAP"), key=lambda frame: frame.start_time)
    assert len(chap_frames) == len(chapters) >= 3
    assert [frame.start_time / 1000 for frame in chap_frames] == [
        c.start_time_seconds for c in sorted(chapters, key=lambda c: c.chapter_number)
    ]
    assert authors
    assert authors <= 6 * 2
    assert OWN_FILE_LIMIT >= 200

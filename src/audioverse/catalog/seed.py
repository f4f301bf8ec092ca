"""The demo catalog: public-domain books with small, real, chaptered MP3 files made on the spot."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import imageio_ffmpeg
from mutagen.id3 import CHAP, CTOC, ID3, TCOM, TCON, TDRC, TIT2, TPE1, CTOCFlags
from mutagen.mp3 import MP3
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.models import Role, User
from audioverse.accounts.passwords import hash_password
from audioverse.catalog.models import SHARED_AUDIO_PREFIX, Audiobook, Author, Chapter, Genre, Narrator
from audioverse.catalog.services import slugify
from audioverse.db import Base
from audioverse.jobs import defer
from audioverse.storage import Storage

CATALOG_FILE = Path(__file__).with_name("demo_catalog.json")
MASTER_COUNT = 8
MASTER_BITRATE = "24k"
# Above this many books, extra books share the master recordings instead of each getting a file:
# 100,000 books at ~200 KB each would be 20 GB of identical tones.
OWN_FILE_LIMIT = 1000
DEMO_PASSWORD = "audioverse-demo-listener"  # noqa: S105 - documented demo credentials
DEMO_USERS = (("demo_listener", Role.LISTENER), ("demo_curator", Role.CURATOR))
# Demo readers give the recommender listening histories with real structure (see ``_listening_histories``).
DEMO_READERS = 48
TASTES = 6
HISTORY_DAYS = 120
# The recommendation rebuild task, by name: it runs once the seed commits (the catalog sits below it).
RECOMMENDATIONS_REBUILD_TASK = "recommendations.nightly"
HISTORY_TABLES = ("listening_ledger", "listening_progress", "review", "library_entry")
CHAPTER_NAMES = ("Opening", "The Journey", "A Turn", "Trials", "Reckoning", "Homecoming", "Epilogue")


@dataclass(frozen=True)
class Master:
    path: Path
    duration: float
    bitrate: int


def demo_entries() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(CATALOG_FILE.read_text())
    return entries


def make_masters(directory: Path, count: int = MASTER_COUNT) -> list[Master]:
    """Short mono MP3 recordings (a tone over soft noise), each of a different length and pitch."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    masters = []
    for index in range(count):
        seconds = 45 + index * 5
        path = directory / f"master-{index}.mp3"
        subprocess.run(  # noqa: S603 - fixed arguments, the bundled ffmpeg
            [
                ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
                "-f", "lavfi", "-i", f"sine=frequency={180 + index * 40}:duration={seconds}",
                "-f", "lavfi", "-i", f"anoisesrc=color=pink:amplitude=0.04:duration={seconds}",
                "-filter_complex", "amix=inputs=2:duration=first,volume=0.5",
                "-ac", "1", "-ar", "22050", "-c:a", "libmp3lame", "-b:a", MASTER_BITRATE, str(path),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        info: Any = MP3(path).info  # mutagen annotates it loosely
        masters.append(Master(path=path, duration=round(info.length, 3), bitrate=info.bitrate))
    return masters


def chapter_plan(duration: float, count: int) -> list[tuple[str, float, float]]:
    step = duration / count
    return [
        (CHAPTER_NAMES[index % len(CHAPTER_NAMES)], round(index * step, 3), round(min(duration, (index + 1) * step), 3))
        for index in range(count)
    ]


def write_tags(path: Path, entry: dict[str, Any], chapters: list[tuple[str, float, float]]) -> None:
    """ID3 tags and CHAP/CTOC chapters, as an uploader's tagging tool would write them."""
    tags = ID3()
    tags.add(TIT2(encoding=3, text=[entry["title"]]))
    tags.add(TPE1(encoding=3, text=entry["authors"]))
    tags.add(TCOM(encoding=3, text=entry["narrators"]))
    tags.add(TCON(encoding=3, text=entry["genres"]))
    tags.add(TDRC(encoding=3, text=[str(entry["year"])]))
    element_ids = []
    for index, (title, start, end) in enumerate(chapters):
        element_id = f"chp{index}"
        element_ids.append(element_id)
        tags.add(
            CHAP(
                element_id=element_id,
                start_time=int(start * 1000),
                end_time=int(end * 1000),
                sub_frames=[TIT2(encoding=3, text=[title])],
            )
        )
    tags.add(
        CTOC(
            element_id="toc",
            flags=CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED,
            child_element_ids=element_ids,
            sub_frames=[TIT2(encoding=3, text=["Contents"])],
        )
    )
    tags.save(path)


def scaled_entries(count: int) -> Iterator[dict[str, Any]]:
    """``count`` books: the curated list first, then numbered volumes of it for large benchmarks."""
    entries = demo_entries()
    for index in range(count):
        entry = dict(entries[index % len(entries)])
        cycle = index // len(entries)
        if cycle:
            entry["title"] = f"{entry['title']}, Volume {cycle + 1}"
            entry["series"] = entry["series"] or entry["title"].rsplit(",", 1)[0]
            entry["series_position"] = cycle + 1
        yield entry


class DemoSeeder:
    """Fills an empty database with the demo catalog, audio in storage, and demo users."""

    def __init__(self, session: AsyncSession, storage: Storage, progress: Callable[[int], None] | None = None) -> None:
        self.session = session
        self.storage = storage
        self.progress = progress or (lambda _done: None)
        self.authors: dict[str, Author] = {}
        self.narrators: dict[str, Narrator] = {}
        self.genres: dict[str, Genre] = {}

    async def is_empty(self) -> bool:
        return not await self.session.scalar(select(func.count()).select_from(Audiobook))

    async def seed(self, books: int, *, batch_size: int = 500) -> int:
        rng = random.Random(20261124)  # the same demo catalog on every machine  # noqa: S311
        with tempfile.TemporaryDirectory(prefix="audioverse-demo-") as scratch:
            masters = await anyio.to_thread.run_sync(make_masters, Path(scratch))
            shared_keys = [f"{SHARED_AUDIO_PREFIX}master-{i}.mp3" for i in range(len(masters))]
            if books > OWN_FILE_LIMIT:
                for master, key in zip(masters, shared_keys, strict=True):
                    await self.storage.put_file(key, master.path, "audio/mpeg")
            uploader = await self._demo_users()
            created = 0
            await self._load_existing_names()
            for index, entry in enumerate(scaled_entries(books)):
                master_index = index % len(masters)
                master = masters[master_index]
                chapters = chapter_plan(master.duration, 3 + index % 4)
                key = shared_keys[master_index]
                if index < OWN_FILE_LIMIT:
                    key = f"audiobooks/demo-{index:06d}/audio.mp3"
                    own = Path(scratch) / "book.mp3"
                    shutil.copyfile(master.path, own)
                    await anyio.to_thread.run_sync(write_tags, own, entry, chapters)
                    await self.storage.put_file(key, own, "audio/mpeg")
                    size = own.stat().st_size
                else:
                    size = master.path.stat().st_size
                self.session.add(await self._book(entry, master, chapters, key, size, uploader, rng))
                created += 1
                if created % batch_size == 0 or created == books:
                    await self.session.commit()
                    self.progress(created)
            await self._listening_histories(rng)
        return created

    async def _load_existing_names(self) -> None:
        self.authors = {a.name.lower(): a for a in await self.session.scalars(select(Author))}
        self.narrators = {n.name.lower(): n for n in await self.session.scalars(select(Narrator))}
        self.genres = {g.slug: g for g in await self.session.scalars(select(Genre))}

    async def _demo_users(self) -> User:
        password_hash = await hash_password(DEMO_PASSWORD)
        users = [
            User(
                email=f"{name.replace('_', '.')}@audioverse.demo",
                username=name,
                password_hash=password_hash,
                role=role,
                is_verified=True,
                credentials_changed_at=datetime.now(UTC),
            )
            for name, role in DEMO_USERS
        ]
        existing = set(
            await self.session.scalars(select(User.username).where(User.username.in_([n for n, _ in DEMO_USERS])))
        )
        self.session.add_all(user for user in users if user.username not in existing)
        await self.session.flush()
        return (await self.session.scalars(select(User).where(User.username == "demo_curator"))).one()

    async def _book(
        self,
        entry: dict[str, Any],
        master: Master,
        chapters: list[tuple[str, float, float]],
        key: str,
        size: int,
        uploader: User,
        rng: random.Random,
    ) -> Audiobook:
        book = Audiobook(
            title=entry["title"],
            subtitle=entry.get("subtitle"),
            description=entry.get("description") or "",
            duration_seconds=master.duration,
            release_date=date(int(entry["year"]), 1, 1) if entry.get("year") else None,
            language=entry.get("language") or "en",
            publisher=entry.get("publisher"),
            series=entry.get("series"),
            series_position=entry.get("series_position"),
            format="mp3",
            mime_type="audio/mpeg",
            size_bytes=size,
            bitrate=master.bitrate,
            audio_key=key,
            play_count=rng.randint(0, 5000),
            uploaded_by_id=uploader.id,
        )
        book.authors = [self._person(self.authors, Author, name) for name in entry["authors"]]
        book.narrators = [self._person(self.narrators, Narrator, name) for name in entry["narrators"]]
        book.genres = [self._genre(name) for name in entry["genres"]]
        book.chapters = [
            Chapter(chapter_number=number, title=title, start_time_seconds=start, end_time_seconds=end)
            for number, (title, start, end) in enumerate(chapters, start=1)
        ]
        return book

    async def _listening_histories(self, rng: random.Random) -> None:
        """Demo readers who listen by taste, and a short history for ``demo_listener``; then a model rebuild.

        A taste is a set of authors, so it cuts across genres as real tastes do: a reader holds two,
        finishes and rates well most of what they pick from them (popular books more often), and
        samples a few books outside them, which they often abandon or rate low.
        """
        books = list(
            await self.session.execute(
                select(Audiobook.id, Audiobook.duration_seconds, Audiobook.play_count, Author.name)
                .join(Audiobook.authors)
                .order_by(Audiobook.id)
                .limit(400)
            )
        )
        if not books:
            return
        taste_of: dict[int, int] = {}
        facts: dict[int, tuple[float, int]] = {}
        for book_id, duration, plays, author in books:
            taste_of.setdefault(book_id, zlib.crc32(author.encode()) % TASTES)
            facts[book_id] = (duration, plays)
        by_taste: dict[int, list[int]] = {}
        for book_id, taste in taste_of.items():
            by_taste.setdefault(taste, []).append(book_id)
        readers = await self._readers()
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in HISTORY_TABLES}
        now = datetime.now(UTC)

        def listen(user_id: int, book_id: int, *, finished: bool, rating: int | None, library: bool, fav: bool) -> None:
            at = now - timedelta(days=rng.randint(1, HISTORY_DAYS), minutes=rng.randint(0, 600))
            duration = facts[book_id][0]
            position = duration if finished else round(duration * rng.uniform(0.2, 0.7), 3)
            rows["listening_ledger"].append(
                {"user_id": user_id, "audiobook_id": book_id, "day": at.date(), "seconds": position}
            )
            rows["listening_progress"].append(
                {
                    "user_id": user_id, "audiobook_id": book_id, "position_seconds": position,
                    "is_completed": finished, "playback_speed": 1.0, "client_updated_at": at, "effective_at": at,
                    "last_listened_at": at, "completed_at": at if finished else None,
                }
            )  # fmt: skip
            if rating is not None:
                rows["review"].append({"user_id": user_id, "audiobook_id": book_id, "rating": rating})
            if library:
                rows["library_entry"].append(
                    {
                        "user_id": user_id,
                        "audiobook_id": book_id,
                        "is_favorite": fav,
                        "favorited_at": at if fav else None,
                    }
                )

        tastes = sorted(by_taste, key=lambda taste: -len(by_taste[taste]))
        for reader in readers:
            own = rng.sample(tastes, min(2, len(tastes)))
            pool = [book for taste in own for book in by_taste[taste]]
            weights = [1 + facts[book][1] for book in pool]
            picks = {*rng.choices(pool, weights=weights, k=rng.randint(8, 14))}
            for book_id in picks:
                finished = rng.random() < 0.75
                rating = rng.choice((4, 5)) if rng.random() < 0.4 else None
                library = rng.random() < 0.4
                listen(
                    reader,
                    book_id,
                    finished=finished,
                    rating=rating,
                    library=library,
                    fav=library and rng.random() < 0.4,
                )
            for book_id in rng.sample(sorted(set(taste_of) - set(pool)), min(2, len(taste_of) - len(pool))):
                finished = rng.random() < 0.3
                listen(reader, book_id, finished=finished, rating=rng.choice((1, 2, 3)), library=False, fav=False)
        listener = await self.session.scalar(select(User.id).where(User.username == "demo_listener"))
        if listener is not None and readers:
            # One taste well under way: four finished, one in progress, one book outside it disliked.
            # Its best-known books, the ones its readers share most.
            favourite = sorted(by_taste[tastes[0]], key=lambda book: -facts[book][1])
            for index, book_id in enumerate(favourite[:5]):
                listen(
                    listener, book_id, finished=index < 4, rating=5 if index == 0 else None, library=False, fav=False
                )
            elsewhere = next((b for b in taste_of if b not in favourite), None)
            if elsewhere is not None:
                listen(listener, elsewhere, finished=False, rating=2, library=False, fav=False)
        for name in HISTORY_TABLES:
            if rows[name]:
                # By table name: the listening and review models sit above the catalog.
                await self.session.execute(insert(Base.metadata.tables[name]), rows[name])
        await defer(self.session, RECOMMENDATIONS_REBUILD_TASK)
        await self.session.commit()

    async def _readers(self) -> list[int]:
        """The demo readers created now (none when they exist already: their history is there too)."""
        names = [f"demo_reader_{n:02d}" for n in range(1, DEMO_READERS + 1)]
        if await self.session.scalar(select(func.count()).select_from(User).where(User.username.in_(names))):
            return []
        # No one signs in as a reader: a hash of nothing any password matches.
        readers = [
            User(
                email=f"{name.replace('_', '.')}@audioverse.demo",
                username=name,
                password_hash="!demo-reader",  # noqa: S106 - not a hash: no password matches it
                role=Role.LISTENER,
                is_verified=True,
                credentials_changed_at=datetime.now(UTC),
            )
            for name in names
        ]
        self.session.add_all(readers)
        await self.session.flush()
        return [reader.id for reader in readers]

    def _person(self, cache: dict[str, Any], model: type[Author] | type[Narrator], name: str) -> Any:
        if name.lower() not in cache:
            cache[name.lower()] = model(name=name)
        return cache[name.lower()]

    def _genre(self, name: str) -> Genre:
        slug = slugify(name)
        if slug not in self.genres:
            self.genres[slug] = Genre(name=name, slug=slug)
        return self.genres[slug]

"""Recommendation rules: what a shelf holds and why, the cached lists, the worker's build and refresh.

The worker computes every listener's list and every book's neighbours (:mod:`.model`) and writes
them to the store under a new version; one write of the ``current`` key then swaps them in, so a
request reads either the old lists or the new ones, never a mix. The API filters what it reads
against the caller's own books at request time (a book finished a second ago never shows), fills
short lists with popular books of the right genre, and, on a miss, blends the cached neighbours of
the caller's books on the spot (content neighbours from the database when there is no model yet):
the shelf is never empty and never an error.

A listener's own list is refreshed after their listening changes: the first read of a list older
than their latest change (progress, rating, library) leaves their new books out at once and sends
one ``recommendations.refresh_user`` per ``REFRESH_DEBOUNCE_SECONDS``, which re-blends their list
from the current version's book lists. The whole model is rebuilt nightly and on a curator's request.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from time import perf_counter
from typing import Any

import anyio
import msgspec
import numpy as np
import structlog
from advanced_alchemy.config import SQLAlchemyAsyncConfig
from advanced_alchemy.filters import LimitOffset
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from litestar.stores.base import Store
from sqlalchemy import CompoundSelect, Select, bindparam, case, literal_column, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.models import User
from audioverse.catalog.models import Audiobook, Genre, audiobook_author, audiobook_genre, audiobook_narrator
from audioverse.catalog.schemas import AudiobookRead
from audioverse.catalog.services import book_cards
from audioverse.db import one_of, take_turns
from audioverse.errors import Conflict, NotFound
from audioverse.jobs import TaskQueue, defer
from audioverse.leases import LeasedStatus
from audioverse.listening.models import LibraryEntry, LibraryRemoval, ListeningLedger, ListeningProgress
from audioverse.recommendations import model
from audioverse.recommendations.schemas import (
    ModelVersion,
    Pick,
    Reason,
    ReasonKind,
    RebuildClaim,
    RebuildJob,
    RebuildStatus,
    RecommendationItem,
    RecommendationPage,
    Shelf,
)
from audioverse.response_cache import bump_content_version
from audioverse.reviews.models import Review

REBUILD_TASK = "recommendations.rebuild"
REFRESH_USER_TASK = "recommendations.refresh_user"
PREFIX = "recommendations"
CURRENT_KEY = f"{PREFIX}:current"
STATUS_KEY = f"{PREFIX}:status"
LEASE_KEY = f"{PREFIX}:lease"
REBUILD_LOCK_ID = 0x5EC0_0013
LEASE_SECONDS = 90
ENTRY_TTL_SECONDS = 8 * 24 * 3600
"""A version's lists outlive the nightly rebuild that replaces them by a week: an old reader never misses."""
REFRESH_DEBOUNCE_SECONDS = 30
SHELF_SIZE = 100
POPULAR_SIZE = 500
HISTORY_BOOKS = 25
WRITE_CONCURRENCY = 64
REBUILD_ABANDONED = "The worker running the rebuild stopped before it finished."
# What a listener's own book weighs when a shelf is blended on the spot (see model's table).
COMPLETED_WEIGHT = model.COMPLETION_WEIGHT
IN_PROGRESS_WEIGHT = 1.0

logger = structlog.get_logger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _abandoned(claim: RebuildClaim) -> RebuildClaim:
    return msgspec.structs.replace(
        claim, status=msgspec.structs.replace(claim.status, state="failed", error=REBUILD_ABANDONED)
    )


# --- the store -----------------------------------------------------------------------------------


class RecommendationCache:
    """The worker's lists in the store, each key under its model version."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._claims = LeasedStatus(
            store,
            STATUS_KEY,
            LEASE_KEY,
            LEASE_SECONDS,
            RebuildClaim,
            is_running=lambda claim: claim.status.state == "running",
            abandoned=_abandoned,
        )

    async def _read(self, key: str) -> bytes | None:
        """A cached value, or ``None`` when the store fails: a shelf then falls back, never errs."""
        try:
            return await self.store.get(key)
        except Exception as exc:
            logger.warning("recommendation cache unreadable; computing on the spot", key=key, error=repr(exc))
            return None

    async def version(self) -> ModelVersion | None:
        raw = await self._read(CURRENT_KEY)
        return msgspec.json.decode(raw, type=ModelVersion) if raw else None

    async def _get(self, version: ModelVersion | None, key: str) -> Shelf | None:
        if version is None:
            return None
        raw = await self._read(f"{PREFIX}:{version.version}:{key}")
        return msgspec.msgpack.decode(raw, type=Shelf) if raw else None

    async def user(self, version: ModelVersion | None, user_id: int) -> Shelf | None:
        return await self._get(version, f"u{user_id}")

    async def book(self, version: ModelVersion | None, book_id: int) -> Shelf | None:
        return await self._get(version, f"b{book_id}")

    async def popular(self, version: ModelVersion | None, genre_id: int | None) -> Shelf | None:
        return await self._get(version, f"g{genre_id}" if genre_id else "popular")

    async def put(self, version: str, entries: Iterable[tuple[str, Shelf]]) -> int:
        """Write ``entries`` under ``version``, a bounded number at once; returns how many."""
        written = 0
        pending: list[Awaitable[None]] = []
        for key, shelf in entries:
            pending.append(
                self.store.set(f"{PREFIX}:{version}:{key}", msgspec.msgpack.encode(shelf), expires_in=ENTRY_TTL_SECONDS)
            )
            if len(pending) >= WRITE_CONCURRENCY:
                await asyncio.gather(*pending)
                written += len(pending)
                pending = []
        await asyncio.gather(*pending)
        return written + len(pending)

    async def swap(self, version: ModelVersion) -> None:
        await self.store.set(CURRENT_KEY, msgspec.json.encode(version))

    async def status(self) -> tuple[str | None, RebuildStatus]:
        """The last rebuild's job id and status; a running one whose lease lapsed reads as failed."""
        claim = await self._claims.read()
        return (claim.job_id, claim.status) if claim else (None, RebuildStatus())

    async def write_status(self, claim: RebuildClaim) -> None:
        """Save the status; while running each write also renews the lease that says the rebuild is alive."""
        await self._claims.write(claim, holder=claim.job_id)

    async def claim(self) -> RebuildClaim | None:
        """Mark a rebuild as running, unless one already is (then ``None``)."""
        _, current = await self.status()
        if current.state == "running":
            return None
        claim = RebuildClaim(job_id=uuid.uuid4().hex, status=RebuildStatus(state="running", started_at=utcnow()))
        await self.write_status(claim)
        return claim

    async def ask_refresh(self, task_queue: TaskQueue, user_id: int) -> None:
        """Send one refresh of ``user_id``'s list per debounce window; a lost send only delays it."""
        key = f"{PREFIX}:refresh:u{user_id}"
        try:
            if await self.store.exists(key):
                return
            await self.store.set(key, b"1", expires_in=REFRESH_DEBOUNCE_SECONDS)
            await task_queue.enqueue(REFRESH_USER_TASK, user_id)
        except Exception as exc:  # a store or broker outage is /api/ready's to report; the list is still served
            logger.warning("recommendation refresh not sent", user_id=user_id, error=repr(exc))


# --- reading the signals and the catalog ---------------------------------------------------------


async def load_signals(session: AsyncSession, now: datetime, user_id: int | None = None) -> model.Signals:
    """Every weighted event of every listener (or of ``user_id``), with its age in days."""
    signals = model.Signals()
    today = now.date()

    def only(column: Any) -> list[Any]:
        return [column == user_id] if user_id is not None else []

    def age(moment: datetime | date) -> float:
        if isinstance(moment, datetime):
            return (now - _as_utc(moment)).total_seconds() / 86400
        return float((today - moment).days)

    async def rows(*columns: Any, where: Sequence[Any] = ()) -> list[Any]:
        user_column = columns[0]
        return list((await session.execute(select(*columns).where(*where, *only(user_column)))).all())

    ledger = await rows(
        ListeningLedger.user_id, ListeningLedger.audiobook_id, ListeningLedger.seconds, ListeningLedger.day
    )
    signals.listening(
        (r[0] for r in ledger), (r[1] for r in ledger), (r[2] for r in ledger), (age(r[3]) for r in ledger)
    )
    done = await rows(
        ListeningProgress.user_id,
        ListeningProgress.audiobook_id,
        ListeningProgress.last_listened_at,
        where=[ListeningProgress.is_completed.is_(True)],
    )
    signals.add(
        (r[0] for r in done), (r[1] for r in done), (model.COMPLETION_WEIGHT for _ in done), (age(r[2]) for r in done)
    )
    rated = await rows(Review.user_id, Review.audiobook_id, Review.rating, Review.updated_at)
    signals.ratings([r[0] for r in rated], [r[1] for r in rated], [r[2] for r in rated], [age(r[3]) for r in rated])
    kept = await rows(
        LibraryEntry.user_id, LibraryEntry.audiobook_id, LibraryEntry.is_favorite, LibraryEntry.updated_at
    )
    signals.add(
        (r[0] for r in kept),
        (r[1] for r in kept),
        (model.LIBRARY_WEIGHT + (model.FAVOURITE_WEIGHT if r[2] else 0.0) for r in kept),
        (age(r[3]) for r in kept),
    )
    return signals


@dataclass
class Catalog:
    features: model.BookFeatures
    play_counts: list[int]


async def load_catalog(session: AsyncSession) -> Catalog:
    """Every book's metadata for content similarity, and its play count (popularity's prior)."""
    books = (
        await session.execute(select(Audiobook.id, Audiobook.series, Audiobook.description, Audiobook.play_count))
    ).all()

    async def pairs(table: Any, column: str) -> dict[int, list[int]]:
        grouped: dict[int, list[int]] = {}
        for book, other in await session.execute(select(table.c.audiobook_id, table.c[column])):
            grouped.setdefault(book, []).append(other)
        return grouped

    authors = await pairs(audiobook_author, "author_id")
    narrators = await pairs(audiobook_narrator, "narrator_id")
    genres = await pairs(audiobook_genre, "genre_id")
    ids = [row[0] for row in books]
    return Catalog(
        model.BookFeatures(
            book_ids=ids,
            authors=[authors.get(i, []) for i in ids],
            narrators=[narrators.get(i, []) for i in ids],
            genres=[genres.get(i, []) for i in ids],
            series=[row[1] for row in books],
            descriptions=[row[2] or "" for row in books],
        ),
        [row[3] for row in books],
    )


# --- the build -----------------------------------------------------------------------------------


@dataclass
class Built:
    users: dict[int, list[Pick]] = field(default_factory=dict)
    books: dict[int, list[Pick]] = field(default_factory=dict)
    popular: list[int] = field(default_factory=list)
    popular_by_genre: dict[int, list[int]] = field(default_factory=dict)
    interactions: int = 0


def compute(signals: model.Signals, catalog: Catalog) -> Built:
    """The whole model from the signals and the catalog: CPU only, run in a worker thread."""
    features = catalog.features
    interactions = model.build_interactions(signals, features.book_ids)
    book_axis = interactions.book_ids
    collaborative = model.item_similarity(interactions)
    content = model.content_similarity(model.content_features(features, book_axis))
    scores = model.popularity(interactions)
    # Before anyone listens, the catalog's play counts order the shelf (and break ties after).
    plays = dict(zip(features.book_ids, catalog.play_counts, strict=True))
    prior = np.asarray([plays.get(int(b), 0) for b in book_axis], dtype=np.float64)
    scores = scores + 0.5 * prior / (prior.max() + 1.0)
    built = Built(interactions=int(interactions.matrix.nnz))
    built.popular = [int(book_axis[i]) for i in np.argsort(-scores, kind="stable")[:POPULAR_SIZE]]
    built.popular_by_genre = model.popular_by_genre(scores, book_axis, features)
    built.books = dict(_book_neighbours(collaborative, content, book_axis))
    rows = list(range(len(interactions.user_ids)))
    shelves = model.recommend_for_rows(interactions, collaborative, content, scores, rows, n=SHELF_SIZE)
    for row, picks in zip(rows, shelves, strict=True):
        built.users[int(interactions.user_ids[row])] = [
            Pick(
                book=int(book_axis[p.book]),
                because=int(book_axis[p.because]) if p.because is not None else 0,
                collaborative=p.collaborative,
                score=round(p.score, 4),
            )
            for p in picks
        ]
    return built


def _book_neighbours(collaborative: Any, content: Any, book_axis: Any) -> Iterable[tuple[int, list[Pick]]]:
    """Per book with any neighbour: the list the API serves as "similar", best first."""
    blended, by_cf = model.book_neighbours(collaborative, content)
    for row in range(blended.shape[0]):
        start, end = blended.indptr[row], blended.indptr[row + 1]
        if start == end:
            continue
        book = int(book_axis[row])
        others = book_axis[blended.indices[start:end]].tolist()
        scores = np.round(blended.data[start:end], 4).tolist()
        flags = set(book_axis[by_cf.indices[by_cf.indptr[row] : by_cf.indptr[row + 1]]].tolist())
        picks = [Pick(other, book, other in flags, score) for other, score in zip(others, scores, strict=True)]
        picks.sort(key=lambda pick: -pick.score)
        yield book, picks


async def rebuild(database: SQLAlchemyAsyncConfig, store: Store, claim: RebuildClaim) -> RebuildStatus:
    """Build the model from the database, write its lists under a new version and swap it in."""
    cache = RecommendationCache(store)
    current_job, current = await cache.status()
    if current.state != "running" or current_job != claim.job_id:
        return current  # its claim lapsed, or another rebuild took its place
    started = perf_counter()
    status = claim.status
    try:
        now = utcnow()
        async with database.get_session() as session:
            signals = await load_signals(session, now)
            catalog = await load_catalog(session)
        built = await _renewing(cache, claim, lambda: anyio.to_thread.run_sync(compute, signals, catalog))
        version = ModelVersion(version=uuid.uuid4().hex[:12], generated_at=now)
        entries: list[tuple[str, Shelf]] = [
            ("popular", Shelf(now, [Pick(book) for book in built.popular])),
            *(
                (f"g{genre}", Shelf(now, [Pick(book) for book in books]))
                for genre, books in built.popular_by_genre.items()
            ),
        ]
        entries += [(f"b{book}", Shelf(now, picks)) for book, picks in built.books.items()]
        entries += [(f"u{user}", Shelf(now, picks)) for user, picks in built.users.items()]
        await _renewing(cache, claim, lambda: cache.put(version.version, entries))
        await cache.swap(version)
        await bump_content_version(store)  # the anonymous and similar shelves come from the new lists
        status.state = "succeeded"
        status.users, status.books, status.interactions = (
            len(built.users),
            len(catalog.features.book_ids),
            built.interactions,
        )
    except Exception as exc:
        logger.exception("recommendation rebuild failed")
        status.state = "failed"
        status.error = f"{type(exc).__name__}: {exc}"[:1000]
    status.finished_at = utcnow()
    status.duration_seconds = round(perf_counter() - started, 3)
    await cache.write_status(claim)
    return status


async def _renewing(cache: RecommendationCache, claim: RebuildClaim, work: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``work`` while renewing the rebuild's lease, so a long build still reads as alive."""
    result: list[Any] = []
    failure: list[BaseException] = []

    async def run(scope: anyio.CancelScope) -> None:
        try:
            result.append(await work())
        except Exception as exc:  # raised below as itself, not wrapped in the task group's ExceptionGroup
            failure.append(exc)
        scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(run, group.cancel_scope)
        while True:
            await cache.write_status(claim)
            await anyio.sleep(LEASE_SECONDS / 3)
    if failure:
        raise failure[0]
    return result[0]


async def rebuild_if_idle(database: SQLAlchemyAsyncConfig, store: Store) -> RebuildStatus:
    """The scheduled rebuild: claim it unless the curator's one runs, then build."""
    claim = await RecommendationCache(store).claim()
    if claim is None:
        return (await RecommendationCache(store).status())[1]
    return await rebuild(database, store, claim)


async def refresh_user(database: SQLAlchemyAsyncConfig, store: Store, user_id: int) -> int:
    """Recompute one listener's list from the current version's book lists; returns its length."""
    cache = RecommendationCache(store)
    version = await cache.version()
    if version is None:
        return 0
    async with database.get_session() as session:
        shelf = Shelves(session, cache, version)
        history = await shelf.history(user_id)
        picks = await shelf.blend(history)
    await cache.put(version.version, [(f"u{user_id}", Shelf(utcnow(), picks))])
    return len(picks)


# --- serving -------------------------------------------------------------------------------------


@dataclass
class History:
    """A listener's own books: what to leave out, what to start from, and when it last changed."""

    seen: set[int] = field(default_factory=set)
    weights: dict[int, float] = field(default_factory=dict)
    changed_at: datetime | None = None


@cache
def _history_statement() -> CompoundSelect[Any]:
    """A listener's four kinds of own books in one round trip, built once (``user_id`` bound per call)."""

    def rows(table: Any, kind: str, value: Any, at: Any) -> Any:
        return select(table.audiobook_id, literal_column(f"'{kind}'"), value, at).where(
            table.user_id == bindparam("user_id")
        )

    return union_all(
        rows(
            ListeningProgress,
            "progress",
            case((ListeningProgress.is_completed, 1), else_=0),
            ListeningProgress.updated_at,
        ),
        rows(Review, "review", Review.rating, Review.updated_at),
        rows(LibraryEntry, "library", case((LibraryEntry.is_favorite, 1), else_=0), LibraryEntry.updated_at),
        rows(LibraryRemoval, "dismissed", literal_column("0"), LibraryRemoval.created_at),
    )


@cache
def _in_genre_statement(dialect: str) -> Select[Any]:
    return select(audiobook_genre.c.audiobook_id).where(
        audiobook_genre.c.genre_id == bindparam("genre_id"), one_of(audiobook_genre.c.audiobook_id, "ids", dialect)
    )


@cache
def _genres_of_statement(dialect: str) -> Select[Any]:
    return select(audiobook_genre.c.audiobook_id, audiobook_genre.c.genre_id).where(
        one_of(audiobook_genre.c.audiobook_id, "ids", dialect)
    )


@cache
def _genres_of_book() -> Select[int, Genre]:
    return (
        select(Audiobook.id, Genre)
        .outerjoin(audiobook_genre, audiobook_genre.c.audiobook_id == Audiobook.id)
        .outerjoin(Genre, Genre.id == audiobook_genre.c.genre_id)
        .where(Audiobook.id == bindparam("book_id"))
        .order_by(Genre.name)
    )


class Shelves:
    """Builds shelves from cached lists, falling back to the database, for one session and version."""

    def __init__(self, session: AsyncSession, cache: RecommendationCache, version: ModelVersion | None) -> None:
        self.session = session
        self.cache = cache
        self.version = version

    async def history(self, user_id: int) -> History:
        history = History()
        now = utcnow()

        def note(book: int, weight: float, at: datetime) -> None:
            history.seen.add(book)
            at = _as_utc(at)
            if weight > 0:
                decayed = weight * 0.5 ** ((now - at).total_seconds() / 86400 / model.HALF_LIFE_DAYS)
                history.weights[book] = history.weights.get(book, 0.0) + decayed
            if history.changed_at is None or at > history.changed_at:
                history.changed_at = at

        disliked: set[int] = set()
        for book, kind, value, at in await self.session.execute(_history_statement(), {"user_id": user_id}):
            if kind == "progress":
                note(book, COMPLETED_WEIGHT if value else IN_PROGRESS_WEIGHT, at)
            elif kind == "review":
                note(book, model.RATING_WEIGHTS.get(value, 0.0), at)
                if value <= model.DISLIKE_MAX_RATING:
                    disliked.add(book)
            elif kind == "library":
                note(book, model.LIBRARY_WEIGHT + (model.FAVOURITE_WEIGHT if value else 0.0), at)
            else:
                note(book, 0.0, at)
        for book in disliked:
            history.weights.pop(book, None)
        return history

    async def neighbours(self, book_id: int) -> list[Pick]:
        cached = await self.cache.book(self.version, book_id)
        if cached is not None:
            return cached.picks
        return (await self.content_neighbours([book_id])).get(book_id, [])

    async def content_neighbours(self, book_ids: Sequence[int]) -> dict[int, list[Pick]]:
        """Books sharing a series, an author or a narrator with each of ``book_ids``, from the database."""
        result: dict[int, dict[int, Pick]] = {book: {} for book in book_ids}
        base = Audiobook.__table__.alias("base")
        other = Audiobook.__table__.alias("other")
        same_series = (
            select(base.c.id, other.c.id)
            .join(other, (other.c.series == base.c.series) & (other.c.id != base.c.id))
            .where(base.c.id.in_(book_ids), base.c.series.is_not(None))
        )
        statements = [(same_series, 1.0)]
        for table, column, weight in (
            (audiobook_author, "author_id", model.AUTHOR_WEIGHT / model.SERIES_WEIGHT),
            (audiobook_narrator, "narrator_id", model.NARRATOR_WEIGHT / model.SERIES_WEIGHT),
        ):
            mine, theirs = table.alias("mine"), table.alias("theirs")
            statements.append(
                (
                    select(mine.c.audiobook_id, theirs.c.audiobook_id)
                    .join(theirs, (theirs.c[column] == mine.c[column]) & (theirs.c.audiobook_id != mine.c.audiobook_id))
                    .where(mine.c.audiobook_id.in_(book_ids))
                    .limit(SHELF_SIZE * len(book_ids)),
                    weight,
                )
            )
        for statement, weight in statements:
            for book, neighbour in await self.session.execute(statement):
                found = result[book].get(neighbour)
                score = weight * model.BLEND_CONTENT + (found.score if found else 0.0)
                result[book][neighbour] = Pick(neighbour, book, False, score)
        return {book: sorted(picks.values(), key=lambda p: -p.score) for book, picks in result.items()}

    async def blend(self, history: History) -> list[Pick]:
        """A listener's list from their books' neighbour lists: each neighbour scored by the weights behind it."""
        strongest = sorted(history.weights.items(), key=lambda item: -item[1])[:HISTORY_BOOKS]
        scores: dict[int, Pick] = {}
        for book, weight in strongest:
            for pick in await self.neighbours(book):
                if pick.book in history.seen:
                    continue
                gained = weight * pick.score
                found = scores.get(pick.book)
                if found is None:
                    scores[pick.book] = Pick(pick.book, book, pick.collaborative, gained)
                else:
                    if gained > found.score:
                        found.because, found.collaborative = book, pick.collaborative
                    found.score += gained
        return sorted(scores.values(), key=lambda p: -p.score)[:SHELF_SIZE]

    async def popular(self, genre_id: int | None) -> list[int]:
        cached = await self.cache.popular(self.version, genre_id)
        if cached is not None:
            return [pick.book for pick in cached.picks]
        statement = select(Audiobook.id).order_by(
            Audiobook.play_count.desc(), Audiobook.total_ratings.desc(), Audiobook.average_rating.desc(), Audiobook.id
        )
        if genre_id is not None:
            statement = statement.join(audiobook_genre, audiobook_genre.c.audiobook_id == Audiobook.id).where(
                audiobook_genre.c.genre_id == genre_id
            )
        return list(await self.session.scalars(statement.limit(POPULAR_SIZE)))

    async def in_genre(self, book_ids: Iterable[int], genre_id: int) -> set[int]:
        ids = list(book_ids)
        if not ids:
            return set()
        statement = _in_genre_statement(self.session.get_bind().dialect.name)
        return set(await self.session.scalars(statement, {"genre_id": genre_id, "ids": ids}))

    async def favourite_genres(self, history: History) -> list[int]:
        """The listener's genres, most weighted first."""
        if not history.weights:
            return []
        weights: dict[int, float] = {}
        statement = _genres_of_statement(self.session.get_bind().dialect.name)
        for book, genre in await self.session.execute(statement, {"ids": list(history.weights)}):
            weights[genre] = weights.get(genre, 0.0) + history.weights[book]
        return sorted(weights, key=lambda genre: -weights[genre])[:3]


def _shared(first: Iterable[Any], second: Iterable[Any]) -> Any:
    names = {item.id: item for item in second}
    return next((item for item in first if item.id in names), None)


def _content_kind(book: AudiobookRead, because: AudiobookRead) -> ReasonKind | None:
    """What two books share, strongest first: a series, an author, a narrator (``None``: none of these)."""
    if book.series and because.series and book.series.lower() == because.series.lower():
        return "same_series"
    if _shared(book.authors, because.authors) is not None:
        return "same_author"
    if _shared(book.narrators, because.narrators) is not None:
        return "same_narrator"
    return None


def reason_for(
    pick: Pick, book: AudiobookRead, because: AudiobookRead | None, from_genre: Genre | None, within: Genre | None
) -> Reason:
    """Why ``book`` is on the shelf, from what the list says and what the two books share."""
    if because is not None:
        kind = "listened_with" if pick.collaborative else _content_kind(book, because)
        if kind is not None:
            return Reason(kind=kind, audiobook_id=because.id, title=because.title)
        shared = _shared(book.genres, because.genres) or (book.genres[0] if book.genres else None)
        return Reason(kind="genre", audiobook_id=because.id, title=because.title, genre=shared.name if shared else None)
    if from_genre is not None:
        return Reason(kind="genre", genre=from_genre.name)
    return Reason(kind="popular", genre=within.name if within else None)


class BookRepository(SQLAlchemyAsyncRepository[Audiobook]):
    model_type = Audiobook


class RecommendationService(SQLAlchemyAsyncRepositoryService[Audiobook]):
    """The shelves the API serves: personal, similar, and the curator's rebuild."""

    repository_type = BookRepository

    async def _genre(self, slug: str | None) -> Genre | None:
        if slug is None:
            return None
        genre: Genre | None = await self.repository.session.scalar(select(Genre).where(Genre.slug == slug))
        if genre is None:
            raise NotFound(f"No genre {slug!r}.")
        return genre

    async def _genres(self, ids: Sequence[int]) -> dict[int, Genre]:
        if not ids:
            return {}
        return {g.id: g for g in await self.repository.session.scalars(select(Genre).where(Genre.id.in_(ids)))}

    async def recommended(
        self,
        store: Store,
        task_queue: TaskQueue | None,
        user: User | None,
        genre_slug: str | None,
        page: LimitOffset,
    ) -> RecommendationPage:
        """The caller's shelf (the popular one for anonymous callers), optionally within one genre.

        Without ``task_queue`` a stale cached list is served as it is, its refresh left to the next request.
        """
        genre = await self._genre(genre_slug)
        cache = RecommendationCache(store)
        version = await cache.version()
        shelves = Shelves(self.repository.session, cache, version)
        history = History()
        picks: list[Pick] = []
        generated_at = version.generated_at if version else utcnow()
        if user is not None:
            history = await shelves.history(user.id)
            cached = await cache.user(version, user.id)
            if cached is None:
                picks = await shelves.blend(history)
                generated_at = utcnow()
            else:
                picks, generated_at = cached.picks, cached.generated_at
                stale = history.changed_at is not None and history.changed_at > generated_at
                if stale and task_queue is not None:
                    await cache.ask_refresh(task_queue, user.id)
        picks = [pick for pick in picks if pick.book not in history.seen]
        genres: dict[int, Genre] = {}
        # A full list needs no fillers, nor the genres they come from (two queries fewer on the usual path).
        if len(picks) < SHELF_SIZE:
            fillers = [genre.id] if genre else await shelves.favourite_genres(history)
            genres = await self._genres(fillers)
            for genre_id in [*fillers, None]:
                if len(picks) >= SHELF_SIZE:
                    break
                # A filler from one of the listener's genres says so; the overall popular shelf says "popular".
                from_genre = genre_id if genre is None else None
                picks += [Pick(book, genre=from_genre or 0) for book in await shelves.popular(genre_id)]
        return await self._page(shelves, picks, history.seen, genre, genres, generated_at, page)

    async def similar(
        self, store: Store, user: User | None, audiobook_id: int, page: LimitOffset
    ) -> RecommendationPage:
        """Listeners of this also enjoyed, then books sharing its metadata, then its genres' popular ones."""
        # The book and its genres in one statement: a row per genre, one with no genre if it has none.
        found = (await self.repository.session.execute(_genres_of_book(), {"book_id": audiobook_id})).all()
        if not found:
            raise NotFound(f"No audiobook with id {audiobook_id}.")
        genres = {genre.id: genre for _, genre in found if genre is not None}
        genre_ids = list(genres)
        cache = RecommendationCache(store)
        version = await cache.version()
        shelves = Shelves(self.repository.session, cache, version)
        cached = await cache.book(version, audiobook_id)
        picks = cached.picks if cached is not None else await shelves.neighbours(audiobook_id)
        seen = (await shelves.history(user.id)).seen if user is not None else set()
        seen.add(audiobook_id)
        for genre_id in [*genre_ids, None]:
            if len([p for p in picks if p.book not in seen]) >= SHELF_SIZE:
                break
            picks = [*picks, *(Pick(other, genre=genre_id or 0) for other in await shelves.popular(genre_id))]
        generated_at = cached.generated_at if cached else utcnow()
        return await self._page(shelves, picks, seen, None, genres, generated_at, page)

    async def _page(
        self,
        shelves: Shelves,
        picks: list[Pick],
        seen: set[int],
        genre: Genre | None,
        genres: dict[int, Genre],
        generated_at: datetime,
        page: LimitOffset,
    ) -> RecommendationPage:
        unique: dict[int, Pick] = {}
        for pick in picks:
            if pick.book not in seen and pick.book not in unique:
                unique[pick.book] = pick
        ordered = list(unique.values())
        if genre is not None:
            inside = await shelves.in_genre(unique, genre.id)
            ordered = [pick for pick in ordered if pick.book in inside]
        ordered = ordered[:SHELF_SIZE]
        window = ordered[page.offset : page.offset + page.limit]
        books = await book_cards(
            self.repository.session, [p.book for p in window] + [p.because for p in window if p.because]
        )
        items = []
        for pick in window:
            if (book := books.get(pick.book)) is None:
                continue  # deleted since the list was computed
            items.append(
                RecommendationItem(
                    audiobook=book,
                    reason=reason_for(pick, book, books.get(pick.because), genres.get(pick.genre), genre),
                )
            )
        return RecommendationPage(
            items=items, total=len(ordered), limit=page.limit, offset=page.offset, generated_at=generated_at
        )

    async def start_rebuild(self, store: Store) -> RebuildJob:
        """Claim a rebuild and defer its job in the request's transaction; 409 while one runs."""
        session = self.repository.session
        await take_turns(session, REBUILD_LOCK_ID)
        cache = RecommendationCache(store)
        claim = await cache.claim()
        if claim is None:
            job_id, _ = await cache.status()
            raise Conflict("A recommendation rebuild is already running.", extra={"job_id": job_id})
        await defer(session, REBUILD_TASK, msgspec.to_builtins(claim))
        return RebuildJob(job_id=claim.job_id)

    async def rebuild_status(self, store: Store) -> RebuildStatus:
        return (await RecommendationCache(store).status())[1]


__all__ = [
    "REBUILD_TASK",
    "REFRESH_USER_TASK",
    "RecommendationCache",
    "RecommendationService",
    "rebuild",
    "rebuild_if_idle",
    "refresh_user",
]


@dataclass(frozen=True)
class DigestPick:
    """A recommendation as a mail shows it: the book and why, in words."""

    book_id: int
    title: str
    reason: str


def reason_text(reason: Reason) -> str:
    """``reason`` in a sentence a mail can show."""
    because = reason.title or "a book you enjoyed"
    sentences = {
        "listened_with": f"Listeners of {because} enjoyed it",
        "same_author": f"By the author of {because}",
        "same_narrator": f"Read by the narrator of {because}",
        "same_series": f"Next in the series of {because}",
        "genre": f"Popular in {reason.genre}" if reason.genre else "Popular in a genre you like",
        "popular": f"Popular in {reason.genre}" if reason.genre else "Popular with listeners",
    }
    return sentences[reason.kind]


async def digest_picks(session: AsyncSession, store: Store, user_id: int, limit: int = 5) -> list[DigestPick]:
    """The listener's top recommendations for their weekly digest (the shelf the API serves them)."""
    user = await session.get(User, user_id)
    if user is None:
        return []
    page = await RecommendationService(session=session).recommended(store, None, user, None, LimitOffset(limit, 0))
    return [DigestPick(item.audiobook.id, item.audiobook.title, reason_text(item.reason)) for item in page.items]

"""The recommendation routes over HTTP at 100,000 books x 20,000 listeners x 1,000,000 listening rows.

The production profile: a fresh PostgreSQL database (created and dropped as the test suite does),
Redis for the cache and the broker (keys under a namespace of this run, deleted at the end), the
search index embedded (no route here uses it). The catalog and the listening are the synthetic data
of ``bench.recommendations_scale`` (``bench.recommendations``' generator), written with COPY: books
with their authors, narrators and genres, listeners, and per listener and book one ledger row, one
progress row (completed or not), a review when rated and a library entry when kept. Then the
worker's own ``rebuild`` runs in this process against the same database and Redis store the service
reads (the recommendation task's body, without a worker process), and ``audioverse run`` serves the
routes: ``--rounds`` requests each of a listener's shelf, a listener's genre shelf, the anonymous
shelf and its genre form, and the similar list anonymously and as a listener, cycling through
``--variants`` different listeners, genres and books. Writes p50/p95/p99 and the load average to
``bench/results/recommendations_api_scale.json``.

``uv run python -m bench.recommendations_api_scale`` (the goal size, about 10 minutes) or
``--books 10000 --users 2000 --events 100000`` to try.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import platform
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from decimal import Decimal
from pathlib import Path
from typing import Any, cast
from unittest.mock import patch

import asyncpg
import httpx
import msgspec
import numpy as np
from advanced_alchemy.filters import LimitOffset
from litestar.stores.base import Store
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis
from sqlalchemy import event
from taskiq import InMemoryBroker

from audioverse.accounts.models import User
from audioverse.accounts.passwords import hash_password
from audioverse.catalog.indexing import search_store_for
from audioverse.config import Settings
from audioverse.db import migrate_to_head, sqlalchemy_config
from audioverse.jobs import TaskQueue
from audioverse.recommendations import services
from audioverse.recommendations.services import RecommendationCache, RecommendationService, rebuild
from bench.common import audioverse_environment, fresh_postgres_database, login, running_service
from bench.recommendations import RESULTS, Catalog, Events, make_catalog, make_events
from bench.recommendations_api import Request, health_samples, percentiles, time_routes, wait_for_rebuild
from bench.recommendations_scale import add_scale_arguments

PASSWORD = "benchmark password 1"
REDIS_URL = os.environ.get("AUDIOVERSE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f}s] {message}", flush=True)


def asyncpg_url(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


class Calendar:
    """The generator's day numbers as dates and instants, the latest day being yesterday."""

    def __init__(self, days: np.ndarray) -> None:
        self.last = int(days.max())
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        self.dates = [yesterday - timedelta(days=self.last - day) for day in range(self.last + 1)]
        self.moments = [datetime.combine(d, day_time(12), tzinfo=UTC) for d in self.dates]

    def date(self, day: int) -> date:
        return self.dates[day]

    def moment(self, day: int) -> datetime:
        return self.moments[day]


async def copy(
    connection: asyncpg.Connection, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> int:
    records = list(rows)
    await connection.copy_records_to_table(table, records=records, columns=list(columns))
    return len(records)


async def load(
    database_url: str, catalog: Catalog, events: Events, plays: list[int], genres: int, password_hash: str
) -> dict[str, int]:
    """Write the catalog, the listeners and their listening with COPY; returns rows per table."""
    features = catalog.features
    calendar = Calendar(events.day)
    long_ago = calendar.moment(0) - timedelta(days=30)
    counts: dict[str, int] = {}
    connection = await asyncpg.connect(asyncpg_url(database_url))
    try:
        async with connection.transaction():
            stamps = (long_ago, long_ago)
            counts["genre"] = await copy(
                connection,
                "genre",
                ("id", "name", "slug", "description", "created_at", "updated_at"),
                ((g + 1, f"Genre {g}", f"genre-{g}", "", *stamps) for g in range(genres)),
            )
            n_authors = max(a for (a,) in features.authors) + 1
            n_narrators = max(n for (n,) in features.narrators) + 1
            person = ("id", "name", "bio", "created_at", "updated_at")
            counts["author"] = await copy(
                connection, "author", person, ((a + 1, f"Author {a}", "", *stamps) for a in range(n_authors))
            )
            counts["narrator"] = await copy(
                connection, "narrator", person, ((n + 1, f"Narrator {n}", "", *stamps) for n in range(n_narrators))
            )
            counts["audiobook"] = await copy(
                connection,
                "audiobook",
                (
                    "id",
                    "title",
                    "description",
                    "duration_seconds",
                    "language",
                    "series",
                    "format",
                    "mime_type",
                    "size_bytes",
                    "bitrate",
                    "audio_key",
                    "average_rating",
                    "total_ratings",
                    "total_reviews",
                    "play_count",
                    "created_at",
                    "updated_at",
                ),
                (
                    (
                        book,
                        f"Book {book}",
                        description,
                        3600.0,
                        "en",
                        series,
                        "mp3",
                        "audio/mpeg",
                        28_800_000,
                        64,
                        f"bench/{book}.mp3",
                        Decimal("0.00"),
                        0,
                        0,
                        played,
                        *stamps,
                    )
                    for book, description, series, played in zip(
                        features.book_ids, features.descriptions, features.series, plays, strict=True
                    )
                ),
            )
            for table, column, values in (
                ("audiobook_author", "author_id", features.authors),
                ("audiobook_narrator", "narrator_id", features.narrators),
                ("audiobook_genre", "genre_id", features.genres),
            ):
                counts[table] = await copy(
                    connection,
                    table,
                    ("audiobook_id", column),
                    (
                        (book, other + 1)
                        for book, others in zip(features.book_ids, values, strict=True)
                        for other in others
                    ),
                )
            n_users = int(events.users.max()) + 1
            counts["user_account"] = await copy(
                connection,
                "user_account",
                (
                    "id",
                    "email",
                    "username",
                    "password_hash",
                    "bio",
                    "role",
                    "is_verified",
                    "default_playback_speed",
                    "credentials_changed_at",
                    "created_at",
                    "updated_at",
                ),
                (
                    (
                        user + 1,
                        f"listener{user + 1}@bench.local",
                        f"listener{user + 1}",
                        password_hash,
                        "",
                        "curator" if user == n_users else "listener",
                        True,
                        1.0,
                        *stamps,
                        long_ago,
                    )
                    # One more account than listeners: the curator who reads the rebuild's status.
                    for user in range(n_users + 1)
                ),
            )
            users = (events.users + 1).tolist()
            books = events.books.tolist()
            days = events.day.tolist()
            seconds = events.seconds.tolist()
            completed = events.completed.tolist()
            counts["listening_ledger"] = await copy(
                connection,
                "listening_ledger",
                ("id", "user_id", "audiobook_id", "day", "seconds", "created_at", "updated_at"),
                (
                    (row + 1, u, b, calendar.date(d), s, calendar.moment(d), calendar.moment(d))
                    for row, (u, b, d, s) in enumerate(zip(users, books, days, seconds, strict=True))
                ),
            )
            counts["listening_progress"] = await copy(
                connection,
                "listening_progress",
                (
                    "id",
                    "user_id",
                    "audiobook_id",
                    "position_seconds",
                    "is_completed",
                    "playback_speed",
                    "client_updated_at",
                    "effective_at",
                    "last_listened_at",
                    "completed_at",
                    "created_at",
                    "updated_at",
                ),
                (
                    (
                        row + 1,
                        u,
                        b,
                        3600.0 if c else min(s, 3599.0),
                        c,
                        1.0,
                        *(calendar.moment(d),) * 3,
                        calendar.moment(d) if c else None,
                        calendar.moment(d),
                        calendar.moment(d),
                    )
                    for row, (u, b, d, s, c) in enumerate(zip(users, books, days, seconds, completed, strict=True))
                ),
            )
            rated = np.flatnonzero(events.rating > 0).tolist()
            ratings = events.rating.tolist()
            counts["review"] = await copy(
                connection,
                "review",
                (
                    "id",
                    "user_id",
                    "audiobook_id",
                    "rating",
                    "review_text",
                    "helpful_count",
                    "status",
                    "created_at",
                    "updated_at",
                ),
                (
                    (
                        row + 1,
                        users[i],
                        books[i],
                        ratings[i],
                        "",
                        0,
                        "visible",
                        calendar.moment(days[i]),
                        calendar.moment(days[i]),
                    )
                    for row, i in enumerate(rated)
                ),
            )
            kept = np.flatnonzero(events.library).tolist()
            favourite = events.favourite.tolist()
            counts["library_entry"] = await copy(
                connection,
                "library_entry",
                ("id", "user_id", "audiobook_id", "is_favorite", "favorited_at", "created_at", "updated_at"),
                (
                    (
                        row + 1,
                        users[i],
                        books[i],
                        favourite[i],
                        calendar.moment(days[i]) if favourite[i] else None,
                        *(calendar.moment(days[i]),) * 2,
                    )
                    for row, i in enumerate(kept)
                ),
            )
            for table in ("genre", "author", "narrator", "audiobook", "user_account", *list(counts)[-4:]):
                await connection.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return counts


@contextmanager
def rebuild_phases() -> Iterator[dict[str, float]]:
    """Seconds of each phase of ``rebuild`` (read, build, write), by wrapping its parts in this process."""
    phases: dict[str, float] = {}

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(function):

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await function(*args, **kwargs)
                finally:
                    phases[name] = phases.get(name, 0.0) + time.perf_counter() - started

            return timed_async

        def timed_sync(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - started

        return timed_sync

    with (
        patch.object(services, "load_signals", timed("read_signals", services.load_signals)),
        patch.object(services, "load_catalog", timed("read_catalog", services.load_catalog)),
        patch.object(services, "compute", timed("compute", services.compute)),
        patch.object(RecommendationCache, "put", timed("write_store", RecommendationCache.put)),
    ):
        yield phases


async def prepare(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Schema, data, rebuild: what the service then serves; returns the timings and the picked variants."""
    rng = np.random.default_rng(args.seed)
    database = sqlalchemy_config(settings)
    try:
        log("migrating the fresh database")
        await migrate_to_head(database)
        log(f"generating {args.books} books x {args.users} listeners x ~{args.events} listening rows")
        started = time.perf_counter()
        catalog = make_catalog(args.books, args.tastes, args.genres, rng)
        events = make_events(catalog, args.users, args.events, rng)
        plays = rng.integers(0, 1000, args.books).tolist()
        password_hash = await hash_password(PASSWORD)
        generate_seconds = time.perf_counter() - started
        log(f"loading {len(events.users)} (listener, book) pairs with COPY")
        started = time.perf_counter()
        counts = await load(settings.resolved_database_url, catalog, events, plays, args.genres, password_hash)
        load_seconds = time.perf_counter() - started
        log(f"loaded in {load_seconds:.1f} s: {counts}")
        store = search_store_for(settings)
        claim = await RecommendationCache(store).claim()
        if claim is None:
            raise RuntimeError("a rebuild already runs in this fresh namespace")
        log("rebuilding the model (recommendations.services.rebuild, as the worker's task)")
        load_at_rebuild = os.getloadavg()
        started = time.perf_counter()
        with rebuild_phases() as phases:
            status = await rebuild(database, store, claim)
        rebuild_seconds = time.perf_counter() - started
        log(f"rebuild phases: { {name: round(seconds, 1) for name, seconds in phases.items()} }")
        log(f"rebuild {status.state} in {rebuild_seconds:.1f} s")
        if status.state != "succeeded":
            raise RuntimeError(f"the rebuild failed: {status.error}")
        # Listeners, genres and books to cycle through: listeners with a list, books someone listened to.
        listeners = rng.choice(np.unique(events.users), args.variants, replace=False) + 1
        books = rng.choice(np.unique(events.books), args.variants, replace=False)
        genres = rng.choice(args.genres, args.variants, replace=args.variants > args.genres)
        return {
            "rows": counts,
            "generate_seconds": round(generate_seconds, 1),
            "load_seconds": round(load_seconds, 1),
            "rebuild_seconds": round(rebuild_seconds, 1),
            "rebuild_phase_seconds": {name: round(seconds, 1) for name, seconds in phases.items()},
            "load_average_at_rebuild": [round(x, 2) for x in load_at_rebuild],
            "rebuild": msgspec.to_builtins(status),
            "listeners": [int(x) for x in listeners],
            "books": [int(x) for x in books],
            "genres": [f"genre-{int(g)}" for g in genres],
            "curator": int(events.users.max()) + 2,
        }
    finally:
        await database.get_engine().dispose()


async def drop_redis_keys(settings: Settings) -> None:
    """Delete this run's keys: the namespace's store (cache, rate limits) and the task queue."""
    redis = Redis.from_url(REDIS_URL)
    try:
        await RedisStore(redis, namespace=settings.redis_namespace, handle_client_shutdown=False).delete_all()
        await redis.delete(settings.task_queue_name)
    finally:
        await redis.aclose()


def measure(base: str, prepared: dict[str, Any], rounds: int) -> dict[str, Any]:
    """Log the listeners in (one curator), then time each route over its variants."""
    curator = login(base, f"listener{prepared['curator']}", PASSWORD)
    listeners = [login(base, f"listener{user}", PASSWORD) for user in prepared["listeners"]]
    books, genres = prepared["books"], prepared["genres"]
    shelf = "/api/audiobooks/recommended/"
    routes: dict[str, list[Request]] = {
        "recommended_listener": [(shelf, headers) for headers in listeners],
        "recommended_genre_listener": [
            (f"{shelf}?genre={genre}", headers) for genre, headers in zip(genres, listeners, strict=True)
        ],
        "recommended_anonymous": [(shelf, {})],
        "recommended_genre_anonymous": [(f"{shelf}?genre={genre}", {}) for genre in genres],
        "similar_anonymous": [(f"/api/audiobooks/{book}/similar/", {}) for book in books],
        "similar_listener": [
            (f"/api/audiobooks/{book}/similar/", headers) for book, headers in zip(books, listeners, strict=True)
        ],
    }
    with httpx.Client(base_url=base, timeout=60) as client:
        status = wait_for_rebuild(client, curator, seconds=10)
        if status["state"] != "succeeded":
            raise RuntimeError(f"the service does not see the rebuild: {status}")
        load_before = os.getloadavg()
        started = time.perf_counter()
        samples = time_routes(client, routes, rounds)
        timing_seconds = time.perf_counter() - started
        load_after = os.getloadavg()
        health = health_samples(client, rounds)
    return {
        "routes": {name: percentiles(values) for name, values in samples.items()},
        "health_for_comparison": percentiles(health),
        "timing_seconds": round(timing_seconds, 1),
        "load_average_before_timing": [round(x, 2) for x in load_before],
        "load_average_after_timing": [round(x, 2) for x in load_after],
        "variants_per_route": {name: len(variants) for name, variants in routes.items()},
    }


class Ledger:
    """Time spent in SQL statements (by statement) and in store reads during one service call."""

    def __init__(self) -> None:
        self.sql: dict[str, list[float]] = {}
        self.store: list[float] = []
        self._started: list[float] = []

    def before(self, *_args: Any) -> None:
        self._started.append(time.perf_counter())

    def after(self, _connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        key = " ".join(statement.split())[:90]
        self.sql.setdefault(key, []).append(time.perf_counter() - self._started.pop())


class TimedStore:
    """A store whose reads are timed into a ledger; everything else is the wrapped store's."""

    def __init__(self, store: Store, ledger: Ledger) -> None:
        self._store = store
        self._ledger = ledger

    async def get(self, key: str, renew_for: int | None = None) -> bytes | None:
        started = time.perf_counter()
        try:
            return await self._store.get(key, renew_for)
        finally:
            self._ledger.store.append(time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def breakdown(settings: Settings, prepared: dict[str, Any], rounds: int) -> dict[str, Any]:
    """The same calls in this process, without HTTP and auth: where a request's time goes.

    Each route's service call ``rounds`` times on a fresh session, as a request gets; SQL time is
    measured around each statement's execution (asyncpg's round trip included), store time around
    each Redis read. What is left is mostly Python (decoding the lists, the ORM building the books,
    the reasons), plus the round trips that are not statements: the pool's pre-ping at checkout, the
    transaction's begin and its rollback at the end.
    """
    database = sqlalchemy_config(settings)
    ledger = Ledger()
    store = cast(Store, TimedStore(search_store_for(settings), ledger))
    engine = database.get_engine().sync_engine
    event.listen(engine, "before_cursor_execute", ledger.before)
    event.listen(engine, "after_cursor_execute", ledger.after)
    task_queue = TaskQueue(InMemoryBroker())
    page = LimitOffset(limit=20, offset=0)
    books, genres = prepared["books"], prepared["genres"]
    calls: dict[str, Callable[[RecommendationService, User | None, int], Awaitable[Any]]] = {
        "recommended_listener": lambda service, user, i: service.recommended(store, task_queue, user, None, page),
        "recommended_genre_listener": lambda service, user, i: service.recommended(
            store, task_queue, user, genres[i], page
        ),
        "recommended_anonymous": lambda service, user, i: service.recommended(store, task_queue, None, None, page),
        "similar_anonymous": lambda service, user, i: service.similar(store, None, books[i], page),
        "similar_listener": lambda service, user, i: service.similar(store, user, books[i], page),
    }
    report: dict[str, Any] = {}
    try:
        async with database.get_session() as session:
            users = [await session.get(User, user) for user in prepared["listeners"]]
        for name, call in calls.items():
            totals, sql_totals, sql_counts, store_totals = [], [], [], []
            by_statement: dict[str, list[float]] = {}
            for i in range(rounds + len(users)):
                index = i % len(users)
                ledger.sql, ledger.store = {}, []
                started = time.perf_counter()
                async with database.get_session() as session:
                    await call(RecommendationService(session=session), users[index], index)
                elapsed = time.perf_counter() - started
                if i < len(users):
                    continue  # one untimed call per variant, as over HTTP
                totals.append(elapsed)
                sql_totals.append(sum(sum(t) for t in ledger.sql.values()))
                sql_counts.append(sum(len(t) for t in ledger.sql.values()))
                store_totals.append(sum(ledger.store))
                for statement, spent in ledger.sql.items():
                    by_statement.setdefault(statement, []).extend(spent)
            report[name] = {
                "service_call": percentiles(totals),
                "sql_ms_mean": round(statistics.fmean(sql_totals) * 1000, 2),
                "sql_statements_mean": round(statistics.fmean(sql_counts), 1),
                "store_reads_ms_mean": round(statistics.fmean(store_totals) * 1000, 2),
                "rest_ms_mean": round(
                    (statistics.fmean(totals) - statistics.fmean(sql_totals) - statistics.fmean(store_totals)) * 1000,
                    2,
                ),
                "sql_by_statement_ms_mean_per_call": {
                    statement: round(sum(spent) / len(totals) * 1000, 2)
                    for statement, spent in sorted(by_statement.items(), key=lambda item: -sum(item[1]))
                },
            }
            print(name, {k: v for k, v in report[name].items() if k != "sql_by_statement_ms_mean_per_call"}, flush=True)
    finally:
        await database.get_engine().dispose()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scale_arguments(parser)
    parser.add_argument("--rounds", type=int, default=300, help="timed requests per route")
    parser.add_argument("--variants", type=int, default=20, help="listeners, genres and books each route cycles")
    parser.add_argument("--output", type=Path, default=RESULTS / "recommendations_api_scale.json")
    args = parser.parse_args()
    run = secrets.token_hex(4)
    with (
        tempfile.TemporaryDirectory(prefix="audioverse-bench-") as scratch,
        fresh_postgres_database() as database_url,
    ):
        service_settings = {
            "database_url": database_url,
            "redis_url": REDIS_URL,
            "redis_namespace": f"avbench{run}",
            "task_queue_name": f"avbench{run}:tasks",
            "secret_key": secrets.token_urlsafe(48),
            "migrate_on_startup": "false",
            # Every listener logs in from this one address.
            "auth_rate_limit": "1000",
        }
        data_dir = Path(scratch) / "var"
        settings = Settings.from_env(audioverse_environment(data_dir, **service_settings))
        try:
            prepared = asyncio.run(prepare(args, settings))
            log("timing the routes against audioverse run")
            with running_service(data_dir, **service_settings) as (base, _process):
                measured = measure(base, prepared, args.rounds)
            log("the same calls in this process, without HTTP")
            in_process = asyncio.run(breakdown(settings, prepared, args.rounds))
        finally:
            asyncio.run(drop_redis_keys(settings))
    result = {
        "benchmark": "recommendations_api_scale",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": "production: PostgreSQL + Redis (cache and broker), audioverse run, one process",
        "size": {"books": args.books, "users": args.users, "ledger_rows_requested": args.events},
        "rows": prepared["rows"],
        "rounds": args.rounds,
        "client": "httpx, sequential, one kept-alive connection, same machine; one untimed request per variant first",
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "data_generate_seconds": prepared["generate_seconds"],
        "data_load_seconds": prepared["load_seconds"],
        "rebuild_seconds": prepared["rebuild_seconds"],
        "rebuild_phase_seconds": prepared["rebuild_phase_seconds"],
        "load_average_at_rebuild": prepared["load_average_at_rebuild"],
        "rebuild": prepared["rebuild"],
        **measured,
        "in_process_breakdown": in_process,
        "goal": {"p95_ms_max": 15},
        "wall_seconds": round(time.monotonic() - STARTED, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

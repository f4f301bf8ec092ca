"""Benchmark: search at catalog scale (reindex against a raw bulk load; API, Meilisearch and tantivy latency)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import inspect
import json
import math
import os
import platform
import secrets
import statistics
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from advanced_alchemy.config import SQLAlchemyAsyncConfig
from litestar.stores.memory import MemoryStore
from meilisearch_python_sdk import AsyncClient
from meilisearch_python_sdk.models.settings import MeilisearchSettings
from sqlalchemy import func, select, text, update

from audioverse.catalog.deps import provide_catalog_filters, provide_search_query
from audioverse.catalog.indexing import (
    PEOPLE,
    REINDEX_BATCH_SIZE,
    audiobook_documents,
    build_search_engine,
    claim_reindex,
    pending_changes,
    person_documents,
    reindex,
)
from audioverse.catalog.models import Audiobook, Author, CatalogOutbox, Narrator
from audioverse.config import Settings
from audioverse.db import sqlalchemy_config
from audioverse.jobs import Job
from audioverse.types import provide_page
from bench.common import (
    AUDIOVERSE,
    ROOT,
    audioverse_environment,
    fresh_postgres_database,
    rss_bytes,
    running_service,
)
from search import SearchEngine
from search.documents import AudiobookDocument, PersonDocument
from search.embedded import EmbeddedSearchEngine
from search.meilisearch import AUDIOBOOK_SETTINGS, PEOPLE_SETTINGS, audiobook_payload, person_payload
from search.query import SearchQuery
from tests.services import MeilisearchServer, run_meilisearch

RESULT_PATH = ROOT / "bench" / "results" / "search_at_scale.json"
DEFAULT_BOOKS = 100_000
# The curated demo list: below it some of the queries' books, authors and narrators do not exist.
MIN_BOOKS = 360
ROUNDS = 5
# One unrecorded pass over the queries first, so the first round does not pay for cold caches and connections.
WARMUP_ROUNDS = 1
# reindex()'s default batch: the document build and the embedded load read and write in the same batches.
REINDEX_BATCH = REINDEX_BATCH_SIZE
# Large batches let Meilisearch index many documents per indexing run; at ~1 KB a document a body
# stays far below Meilisearch's default 100 MB payload limit.
RAW_BATCH = 20_000
TASK_TIMEOUT_MS = 3_600_000
SEED_TIMEOUT_SECONDS = 3 * 3600
MIB = 1024 * 1024
STARTED = time.monotonic()
SUGGEST_ROUNDS_PER_ROUND = 4
JOBS_SETTLE_SECONDS = 600


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f}s] {message}", flush=True)


def engine_query(params: Mapping[str, Any]) -> SearchQuery:
    """The engine query the search endpoint builds from these parameters, through its own dependency providers."""
    filter_names = inspect.signature(provide_catalog_filters).parameters
    filters = provide_catalog_filters(**{name: value for name, value in params.items() if name in filter_names})
    rest = {name: value for name, value in params.items() if name not in filter_names}
    page = provide_page(**{name: rest.pop(name) for name in ("limit", "offset") if name in rest})
    return provide_search_query(filters, page, **rest)


@dataclass(frozen=True)
class QueryCase:
    kind: str
    """What the query exercises: exact, typo, prefix, filters, sort, facets or page."""
    params: dict[str, Any]
    """Search endpoint parameters, named as clients send them."""

    def query_string(self) -> dict[str, str]:
        return {name: str(value) for name, value in self.params.items()}


def query_cases(dickens: int, bexley: int) -> list[QueryCase]:
    """Queries a listener would type, over the demo catalog (``dickens``/``bexley``: an author's and a narrator's id).

    The seeded books all last 45-80 s, so the duration filters are chosen inside that range to select something.
    """

    def case(kind: str, **params: Any) -> QueryCase:
        return QueryCase(kind, params)

    return [
        case("exact", q="pride and prejudice"),
        case("exact", q="the hound of the baskervilles"),
        case("exact", q="dracula"),
        case("exact", q="les miserables"),  # the title has "Misérables": accents fold
        case("exact", q="charles dickens"),  # an author
        case("exact", q="clara bexley"),  # a narrator
        case("exact", q="sherlock holmes"),  # a series
        case("exact", q="detective london"),  # words from a description
        # One letter dropped or two neighbours swapped (two edits in words of nine letters or more).
        case("typo", q="pride and prejduice"),
        case("typo", q="wuthering hieghts"),
        case("typo", q="sherlok holmes"),
        case("typo", q="frankenstien"),
        case("typo", q="dracual"),
        case("typo", q="charles dikens"),
        case("typo", q="jane austn"),
        case("typo", q="artur conan doyle"),
        case("typo", q="dostoevksy"),
        case("typo", q="baskervils"),
        case("typo", q="owen caloway"),
        case("typo", q="treasure islnad"),
        case("typo", q="fahter brown"),
        # The last word of a query also matches as a prefix, as typed in a search box.
        case("prefix", q="sherl"),
        case("prefix", q="dick"),
        case("prefix", q="wizard of o"),
        case("prefix", q="jungle bo"),
        case("prefix", q="anne of gr"),
        case("filters", genre="classics"),
        case("filters", language="fr", facets="genres"),
        case("filters", duration_min=60.0, duration_max=75.0),
        case("filters", genre="mystery", language="en", duration_min=50.0),
        case("filters", released_after=date(1850, 1, 1), released_before=date(1899, 12, 31)),
        case("filters", author=dickens),
        case("filters", narrator=bexley),
        case("filters", q="mars", genre="science-fiction"),
        case("sort", sort="title"),
        case("sort", sort="-created_at"),
        case("sort", genre="adventure", sort="-play_count"),
        case("sort", q="sherlock holmes", sort="-release_date"),
        case("sort", author=dickens, sort="release_date"),
        case("facets", facets="genres,languages,authors,narrators,duration"),
        case("facets", q="sherlock", facets="genres,authors,duration"),
        case("facets", q="adventure", facets="genres,languages"),
        case("facets", genre="children-s", facets="authors,narrators"),
        case("page", genre="classics", offset=200),
        case("page", q="holmes", offset=40),
        # An offset that is not a whole number of pages: Meilisearch serves it from one larger page.
        case("page", q="oz", offset=30),
    ]


@dataclass(frozen=True)
class Timing:
    case: int
    """Index of the query in the list."""
    latency_ms: float
    """Measured by the caller: the HTTP client for the API, the awaiting code for an engine."""
    processing_time_ms: int
    """What the engine reports itself (Meilisearch's processingTimeMs; the embedded engine times its search)."""
    total: int


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Percentiles (interpolated between the nearest samples), mean and max, in milliseconds."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "count": len(samples),
        "p50": round(cuts[49], 2),
        "p95": round(cuts[94], 2),
        "p99": round(cuts[98], 2),
        "mean": round(statistics.fmean(samples), 2),
        "max": round(max(samples), 2),
    }


def latency_report(timings: Sequence[Timing]) -> dict[str, Any]:
    return {
        "latency_ms": summary([t.latency_ms for t in timings]),
        "processing_time_ms": summary([t.processing_time_ms for t in timings]),
        # What the caller waits beyond the engine's own work: HTTP, (de)serialization, and for the API the
        # database read of the hits and the response.
        "overhead_ms": summary([t.latency_ms - t.processing_time_ms for t in timings]),
    }


async def engine_timings(engine: SearchEngine, cases: Sequence[QueryCase], rounds: int) -> list[Timing]:
    """Each query ``rounds`` times at engine level, one after the other, after a warm-up pass."""
    queries = [engine_query(case.params) for case in cases]
    for _ in range(WARMUP_ROUNDS):
        for query in queries:
            await engine.search(query)
    timings = []
    for _ in range(rounds):
        for index, query in enumerate(queries):
            started = time.perf_counter()
            result = await engine.search(query)
            elapsed_ms = (time.perf_counter() - started) * 1000
            timings.append(Timing(index, elapsed_ms, result.processing_time_ms, result.total))
    return timings


def api_timings(base: str, cases: Sequence[QueryCase], rounds: int) -> list[Timing]:
    """Each query ``rounds`` times over HTTP, sequentially on one kept-alive connection, after a warm-up pass."""
    url = f"{base}/api/audiobooks/search/"
    with httpx.Client(timeout=60) as client:

        def request(index: int, case: QueryCase) -> Timing:
            started = time.perf_counter()
            response = client.get(url, params=case.query_string())
            elapsed_ms = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"{response.request.url} answered {response.status_code}: {response.text[:500]}")
            body = response.json()
            return Timing(index, elapsed_ms, body["processing_time_ms"], body["total"])

        for _ in range(WARMUP_ROUNDS):
            for index, case in enumerate(cases):
                request(index, case)
        return [request(index, case) for _ in range(rounds) for index, case in enumerate(cases)]


async def wait_for_background_jobs(settings: Settings) -> float:
    """Seconds until the service has run the durable jobs the seed left.

    A recommendation rebuild over every book is among them; timed alongside, it doubles the latencies.
    """
    database = sqlalchemy_config(settings)
    started = time.monotonic()
    try:
        while True:
            async with database.get_session() as session:
                left = await session.scalar(select(func.count()).select_from(Job).where(Job.failed_at.is_(None)))
            if not left:
                return time.monotonic() - started
            if time.monotonic() - started > JOBS_SETTLE_SECONDS:
                raise RuntimeError(f"{left} background jobs still pending after {JOBS_SETTLE_SECONDS} s")
            await asyncio.sleep(1)
    finally:
        await database.get_engine().dispose()


def health_latencies(base: str, requests: int) -> list[float]:
    """``GET /api/health`` latencies: what any request costs through the server, the floor under the API's overhead."""
    with httpx.Client(timeout=60) as client:
        client.get(f"{base}/api/health").raise_for_status()
        latencies = []
        for _ in range(requests):
            started = time.perf_counter()
            client.get(f"{base}/api/health").raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


SUGGEST_PREFIXES = ["a", "d", "s", "th", "dr", "mo", "sh", "pri", "dic", "hol", "war", "fra"]
"""What a listener has typed when suggestions first matter: one to three letters."""


def suggest_latencies(base: str, rounds: int) -> list[float]:
    """``GET /api/search/suggest/`` for 1-3 letter prefixes, sequentially, after a warm-up pass."""
    with httpx.Client(timeout=60) as client:

        def suggest(text: str) -> float:
            started = time.perf_counter()
            client.get(f"{base}/api/search/suggest/", params={"q": text}).raise_for_status()
            return (time.perf_counter() - started) * 1000

        for text in SUGGEST_PREFIXES:
            suggest(text)
        return [suggest(text) for _ in range(rounds) for text in SUGGEST_PREFIXES]


class Progress:
    """Logs a long load at every tenth of the way."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tenths = 0

    def __call__(self, processed: int, total: int) -> None:
        tenths = processed * 10 // max(total, 1)
        if tenths > self.tenths:
            self.tenths = tenths
            log(f"{self.label}: {processed}/{total}")


def seed(data_dir: Path, books: int, settings: dict[str, str]) -> float:
    """Seconds for ``audioverse seed --books N`` into the fresh database."""
    started = time.perf_counter()
    completed = subprocess.run(
        [AUDIOVERSE, "seed", "--books", str(books)],
        env=audioverse_environment(data_dir, **settings),
        capture_output=True,
        timeout=SEED_TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"audioverse seed failed ({completed.returncode}): {completed.stderr.decode()[-3000:]}")
    return time.perf_counter() - started


async def full_reindex(settings: Settings, database: SQLAlchemyAsyncConfig) -> dict[str, Any]:
    """Our own reindex into the (empty) live index, as ``audioverse search reindex`` runs it."""
    engine = build_search_engine(settings)
    store = MemoryStore()
    try:
        await engine.configure()
        async with database.get_session() as session, session.begin():
            status = await claim_reindex(store, session)
        started = time.perf_counter()
        finished = await reindex(
            database, engine, store, status, batch_size=REINDEX_BATCH, progress=Progress("reindex")
        )
        seconds = time.perf_counter() - started
        indexed = await engine.count()
    finally:
        await engine.close()
    if finished.state != "succeeded" or indexed != finished.processed:
        raise RuntimeError(f"reindex ended {finished.state!r} with {indexed} of {finished.processed} books indexed")
    return {
        "documents": finished.processed,
        "batch_size": REINDEX_BATCH,
        "seconds": round(seconds, 2),
        "docs_per_second": round(finished.processed / seconds, 1),
    }


async def settle_outbox(database: SQLAlchemyAsyncConfig) -> int:
    """Mark the seed's outbox rows processed; returns how many there were.

    The reindex just built the index from the rows those outbox entries point at, so draining them
    would only upsert every book again, and the server's drain (kicked at start, swept every minute)
    would do that while the latencies are measured.
    """
    async with database.get_session() as session:
        pending = (await pending_changes(session)).changes
        await session.execute(
            update(CatalogOutbox).where(CatalogOutbox.processed_at.is_(None)).values(processed_at=datetime.now(UTC))
        )
        await session.commit()
    return pending


async def catalog_documents(database: SQLAlchemyAsyncConfig) -> tuple[list[AudiobookDocument], list[PersonDocument]]:
    """Every audiobook document (read in reindex-sized batches, as the reindex reads them) and every person."""
    books: list[AudiobookDocument] = []
    async with database.get_session() as session:
        total = await session.scalar(select(func.count()).select_from(Audiobook)) or 0
        people = [person for kind, model in PEOPLE.values() for person in await person_documents(session, kind, model)]
    last_id = 0
    for _ in range(math.ceil(total / REINDEX_BATCH)):
        async with database.get_session() as session:
            ids = list(
                await session.scalars(
                    select(Audiobook.id).where(Audiobook.id > last_id).order_by(Audiobook.id).limit(REINDEX_BATCH)
                )
            )
            books += await audiobook_documents(session, ids)
        if not ids:
            break
        last_id = ids[-1]
    return books, people


def request_body(payloads: Sequence[dict[str, Any]]) -> bytes:
    # The client the engine uses (meilisearch-python-sdk, its default handler) sends json.dumps of the
    # payload list, UTF-8 encoded: these are the same bytes, made before the clock starts.
    return json.dumps(list(payloads)).encode()


async def raw_bulk_load(
    meilisearch: MeilisearchServer, client: AsyncClient, uid: str, book_bodies: Sequence[bytes], people_body: bytes
) -> float:
    """Seconds to create the indexes, apply our settings, send every body and see every task succeed.

    Everything is sent before waiting on anything: Meilisearch runs an index's tasks in order and
    merges consecutive document additions into one indexing run.
    """
    indexes: list[tuple[str, str, MeilisearchSettings, Sequence[bytes]]] = [
        (uid, "id", AUDIOBOOK_SETTINGS, book_bodies),
        (f"{uid}_people", "key", PEOPLE_SETTINGS, [people_body]),
    ]
    headers = {
        "Authorization": f"Bearer {meilisearch.master_key}",
        "Content-Type": "application/json",
        "Accept-Encoding": "identity",
    }
    async with httpx.AsyncClient(base_url=meilisearch.url, headers=headers, timeout=600) as http:

        async def enqueued(response: httpx.Response) -> int:
            response.raise_for_status()
            task_uid: int = response.json()["taskUid"]
            return task_uid

        started = time.perf_counter()
        task_uids: list[int] = []
        for index_uid, primary_key, index_settings, bodies in indexes:
            task_uids.append(
                await enqueued(await http.post("/indexes", json={"uid": index_uid, "primaryKey": primary_key}))
            )
            task_uids.append((await client.index(index_uid).update_settings(index_settings)).task_uid)
            for body in bodies:
                documents_url = f"/indexes/{index_uid}/documents"
                response = await http.post(documents_url, content=body, params={"primaryKey": primary_key})
                task_uids.append(await enqueued(response))
        for task_uid in task_uids:
            result = await client.wait_for_task(task_uid, timeout_in_ms=TASK_TIMEOUT_MS)
            if result.status != "succeeded":
                raise RuntimeError(f"Meilisearch task {task_uid} ({result.task_type}) {result.status}: {result.error}")
        return time.perf_counter() - started


async def embedded_load(
    engine: EmbeddedSearchEngine, books: Sequence[AudiobookDocument], people: Sequence[PersonDocument]
) -> float:
    """Seconds to build the embedded index the way a reindex does: staging, batches, swap."""
    started = time.perf_counter()
    await engine.create_staging_index()
    await engine.load_staging(people=people)
    progress = Progress("embedded load")
    for start in range(0, len(books), REINDEX_BATCH):
        await engine.load_staging(documents=books[start : start + REINDEX_BATCH])
        progress(min(start + REINDEX_BATCH, len(books)), len(books))
    await engine.swap_in_staging()
    return time.perf_counter() - started


def directory_mib(path: Path) -> float:
    return round(sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) / MIB, 1)


async def person_id(database: SQLAlchemyAsyncConfig, model: type[Author] | type[Narrator], name: str) -> int:
    async with database.get_session() as session:
        found = await session.scalar(select(model.id).where(model.name == name))
    if found is None:
        raise RuntimeError(f"the seeded catalog has no {model.__name__.lower()} named {name!r}")
    return found


@dataclass
class EngineRun:
    """What the in-process part of the benchmark measured, for the report."""

    results: dict[str, Any]
    cases: list[QueryCase]
    meilisearch_timings: list[Timing]
    embedded_timings: list[Timing]


async def in_process_benchmarks(
    settings: Settings, meilisearch: MeilisearchServer, scratch: Path, rounds: int, raw_batch: int
) -> EngineRun:
    """Reindex, raw bulk load, engine-level latency of Meilisearch and of the embedded engine."""
    database = sqlalchemy_config(settings)
    # Uncompressed answers, as MeilisearchEngine asks for (compressed ones stall on delayed ACKs).
    client = AsyncClient(
        meilisearch.url, meilisearch.master_key, timeout=600, custom_headers={"Accept-Encoding": "identity"}
    )
    results: dict[str, Any] = {}
    try:
        # A fresh Meilisearch process takes its first reindex two to three times as long as any later one
        # (measured at 20,000 books: 9-15 s, then 4-6 s, whatever the batch settings), so the first, into
        # the empty live index, is recorded apart; the compared one replaces a full live index, as in
        # production.
        log("first reindex, into a fresh Meilisearch")
        results["reindex_cold"] = await full_reindex(settings, database)
        log("full reindex through audioverse.catalog.indexing.reindex")
        results["reindex"] = await full_reindex(settings, database)
        results["outbox_rows_settled"] = await settle_outbox(database)

        log("building documents from the database")
        started = time.perf_counter()
        books, people = await catalog_documents(database)
        build_seconds = time.perf_counter() - started
        started = time.perf_counter()
        book_payloads = [audiobook_payload(book) for book in books]
        book_bodies = [
            request_body(book_payloads[start : start + raw_batch]) for start in range(0, len(books), raw_batch)
        ]
        people_body = request_body([person_payload(person) for person in people])
        serialize_seconds = time.perf_counter() - started
        payload_bytes = sum(len(body) for body in book_bodies)

        log(f"raw bulk load: {len(books)} documents in {len(book_bodies)} bodies of up to {raw_batch}")
        raw_uid = f"{settings.search_index}_raw"
        raw_seconds = await raw_bulk_load(meilisearch, client, raw_uid, book_bodies, people_body)
        raw_count = (await client.index(raw_uid).get_stats()).number_of_documents
        if raw_count != len(books):
            raise RuntimeError(f"the raw index holds {raw_count} documents, not {len(books)}")
        results["raw_bulk_load"] = {
            "documents": len(books),
            "people": len(people),
            "batch_size": raw_batch,
            "requests": len(book_bodies) + 1,
            "payload_mib": round(payload_bytes / MIB, 1),
            "seconds": round(raw_seconds, 2),
            "docs_per_second": round(len(books) / raw_seconds, 1),
            "untimed_build_documents_from_db_seconds": round(build_seconds, 2),
            "untimed_serialize_seconds": round(serialize_seconds, 2),
        }
        results["reindex_to_raw_time_ratio"] = round(results["reindex"]["seconds"] / raw_seconds, 2)
        # Only the live index stays, as in production, while latencies are measured.
        for uid in (raw_uid, f"{raw_uid}_people"):
            await client.delete_index_if_exists(uid)

        dickens = await person_id(database, Author, "Charles Dickens")
        bexley = await person_id(database, Narrator, "Clara Bexley")
        cases = query_cases(dickens, bexley)

        log(f"Meilisearch engine-level latency: {len(cases)} queries x {rounds} rounds")
        meilisearch_engine = build_search_engine(settings)
        try:
            meilisearch_timings = await engine_timings(meilisearch_engine, cases, rounds)
        finally:
            await meilisearch_engine.close()

        log("embedded engine load")
        embedded_dir = scratch / "embedded-index"
        embedded = EmbeddedSearchEngine(embedded_dir)
        try:
            await embedded.configure()
            embedded_seconds = await embedded_load(embedded, books, people)
            results["embedded_load"] = {
                "documents": len(books),
                "people": len(people),
                "batch_size": REINDEX_BATCH,
                "seconds": round(embedded_seconds, 2),
                "docs_per_second": round(len(books) / embedded_seconds, 1),
                "index_mib": directory_mib(embedded_dir),
            }
            log(f"embedded engine-level latency: {len(cases)} queries x {rounds} rounds")
            embedded_timings = await engine_timings(embedded, cases, rounds)
        finally:
            await embedded.close()

        stats = await client.get_all_stats()
        results["meilisearch_after_loads"] = {
            "database_mib": round(int(stats.database_size) / MIB, 1),
            "rss_mib": round((rss_bytes(meilisearch.process.pid) if meilisearch.process else 0) / MIB, 1),
        }
        async with database.get_session() as session:
            postgres_version = await session.scalar(text("SHOW server_version"))
        results["versions"] = {
            "meilisearch": (await client.get_version()).pkg_version,
            "postgresql": postgres_version,
        }
        return EngineRun(results, cases, meilisearch_timings, embedded_timings)
    finally:
        await client.aclose()
        await database.get_engine().dispose()


def per_query(cases: Sequence[QueryCase], runs: Mapping[str, Sequence[Timing]]) -> list[dict[str, Any]]:
    """Each query's hits and median latency per target, to see which kinds of query cost what."""
    rows = []
    for index, case in enumerate(cases):
        row: dict[str, Any] = {"kind": case.kind, "params": case.query_string(), "total": {}, "p50_ms": {}}
        for target, timings in runs.items():
            mine = [t for t in timings if t.case == index]
            row["total"][target] = mine[0].total
            row["p50_ms"][target] = round(statistics.median(t.latency_ms for t in mine), 2)
        rows.append(row)
    return rows


def by_kind(cases: Sequence[QueryCase], runs: Mapping[str, Sequence[Timing]]) -> dict[str, dict[str, dict[str, float]]]:
    kinds = dict.fromkeys(case.kind for case in cases)
    return {
        kind: {
            target: summary([t.latency_ms for t in timings if cases[t.case].kind == kind])
            for target, timings in runs.items()
        }
        for kind in kinds
    }


def machine() -> dict[str, Any]:
    memory_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:")
    )
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def git_revision() -> str:
    completed = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return completed.stdout.strip() or "unknown"


def print_summary(result: dict[str, Any]) -> None:
    def load(label: str, report: dict[str, Any]) -> str:
        return f"  {label:<36} {report['seconds']:8.1f} s {report['docs_per_second']:9.0f} docs/s"

    def latency(label: str, report: dict[str, float]) -> str:
        return f"  {label:<36} p50 {report['p50']:7.2f}  p95 {report['p95']:7.2f}  p99 {report['p99']:7.2f} ms"

    api, engines = result["api_search"], result["engine_search"]
    print(f"\nsearch at scale: {result['books']} books, {result['machine']['nproc']} CPUs")
    print(f"  {'seed (audioverse seed)':<36} {result['seed_seconds']:8.1f} s")
    print(load("first reindex (fresh Meilisearch)", result["reindex_cold"]))
    print(load("reindex (our code path)", result["reindex"]))
    print(load("raw bulk load (same documents)", result["raw_bulk_load"]))
    print(f"  {'reindex time / raw load time':<36} {result['reindex_to_raw_time_ratio']:8.2f}")
    print(load("embedded load (tantivy, staging)", result["embedded_load"]))
    print(f"  {api['requests']} API searches ({api['queries']} queries x {api['rounds']} rounds), sequential:")
    print(latency("API, client-side", api["latency_ms"]))
    print(latency("API, Meilisearch processingTimeMs", api["processing_time_ms"]))
    print(latency("API minus processingTimeMs", api["overhead_ms"]))
    print(latency("GET /api/health (server floor)", api["health_endpoint_latency_ms"]))
    print(latency("GET /api/search/suggest/ (1-3 letters)", result["api_suggest"]["latency_ms"]))
    print(latency("MeilisearchEngine.search", engines["meilisearch"]["latency_ms"]))
    print(latency("EmbeddedSearchEngine.search", engines["embedded"]["latency_ms"]))
    if result["queries_without_hits"]:
        print(f"  queries without hits: {result['queries_without_hits']}")
    if result["queries_where_engines_disagree_on_total"]:
        print(f"  totals that differ between the engines: {result['queries_where_engines_disagree_on_total']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--books", type=int, default=DEFAULT_BOOKS)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="recorded passes over the query list")
    parser.add_argument("--raw-batch", type=int, default=RAW_BATCH, help="documents per request of the raw load")
    parser.add_argument("--output", type=Path, default=RESULT_PATH)
    args = parser.parse_args()
    if args.books < MIN_BOOKS:
        parser.error(f"--books must be at least {MIN_BOOKS}, the demo list the queries look for")
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 for percentiles")
    if args.raw_batch < 1:
        parser.error("--raw-batch must be at least 1")
    started_at = datetime.now(UTC)
    load_at_start = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="audioverse-bench-search-") as scratch_name,
        fresh_postgres_database() as database_url,
    ):
        scratch = Path(scratch_name)
        data_dir = scratch / "var"
        with run_meilisearch(scratch) as meilisearch:
            service_settings = {
                "database_url": database_url,
                "search_backend": "meilisearch",
                "meilisearch_url": meilisearch.url,
                "meilisearch_api_key": meilisearch.master_key,
                "search_index": "bench_audiobooks",
                "secret_key": secrets.token_urlsafe(48),
                # No Redis: the server runs its tasks on the in-process broker, no worker needed.
                "redis_url": "",
                # The search path itself is timed: the response cache would answer every round after the first.
                "response_cache_seconds": "0",
            }
            settings = Settings.from_env(audioverse_environment(data_dir, **service_settings))
            log(f"seeding {args.books} books into {database_url.rsplit('/', 1)[1]}")
            seed_seconds = seed(data_dir, args.books, service_settings)
            run = asyncio.run(in_process_benchmarks(settings, meilisearch, scratch, args.rounds, args.raw_batch))
            log(f"API latency: {len(run.cases)} queries x {args.rounds} rounds against audioverse run")
            with running_service(data_dir, **service_settings) as (base, _process):
                jobs_settled_seconds = asyncio.run(wait_for_background_jobs(settings))
                log(f"the service ran its background jobs in {jobs_settled_seconds:.1f} s; timing")
                api = api_timings(base, run.cases, args.rounds)
                health = health_latencies(base, len(api))
                suggestions = suggest_latencies(base, SUGGEST_ROUNDS_PER_ROUND * args.rounds)
    previous = json.loads(args.output.read_text()) if args.output.exists() else {}
    runs = {"api": api, "meilisearch_engine": run.meilisearch_timings, "embedded_engine": run.embedded_timings}
    queries = per_query(run.cases, runs)
    result: dict[str, Any] = {
        "benchmark": "search_at_scale",
        "date": started_at.isoformat(timespec="seconds"),
        "books": args.books,
        "machine": {**machine(), "load_average_at_start": [round(load, 2) for load in load_at_start]},
        "versions": {
            **run.results.pop("versions"),
            "tantivy": importlib.metadata.version("tantivy"),
            "meilisearch_python_sdk": importlib.metadata.version("meilisearch-python-sdk"),
            "litestar": importlib.metadata.version("litestar"),
            "audioverse": git_revision(),
        },
        "seed_seconds": round(seed_seconds, 1),
        **run.results,
        "api_search": {
            "requests": len(api),
            "queries": len(run.cases),
            "rounds": args.rounds,
            "warmup_rounds": WARMUP_ROUNDS,
            "client": "httpx, sequential, one kept-alive connection, same machine",
            "background_jobs_settled_seconds_before": round(jobs_settled_seconds, 1),
            **latency_report(api),
            "health_endpoint_latency_ms": summary(health),
        },
        "api_suggest": {
            "prefixes": SUGGEST_PREFIXES,
            "requests": len(suggestions),
            "latency_ms": summary(suggestions),
        },
        "engine_search": {
            "meilisearch": latency_report(run.meilisearch_timings),
            "embedded": latency_report(run.embedded_timings),
        },
        "by_kind_latency_ms": by_kind(run.cases, runs),
        "queries_without_hits": [q["params"] for q in queries if q["total"]["api"] == 0],
        "queries_where_engines_disagree_on_total": [
            {"params": q["params"], **q["total"]}
            for q in queries
            if q["total"]["meilisearch_engine"] != q["total"]["embedded_engine"]
        ],
        "queries": queries,
        "wall_seconds": round(time.monotonic() - STARTED, 1),
        # The last recorded run's headline numbers, to compare against.
        "previous": {
            "date": previous.get("date"),
            "audioverse": previous.get("versions", {}).get("audioverse"),
            "api_search_latency_ms": previous.get("api_search", {}).get("latency_ms"),
            "reindex_to_raw_time_ratio": previous.get("reindex_to_raw_time_ratio"),
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print_summary(result)
    log(f"wrote {args.output}")
    if any(q["total"]["api"] != q["total"]["meilisearch_engine"] for q in queries):
        raise SystemExit(
            "the API and MeilisearchEngine answered different totals: the API is not on the reindexed index"
        )


if __name__ == "__main__":
    main()

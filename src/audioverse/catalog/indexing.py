"""Keeping the search index equal to the catalog: documents from rows, outbox drain, full reindex."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import anyio
import msgspec
from advanced_alchemy.config import SQLAlchemyAsyncConfig
from anyio.abc import TaskGroup
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.catalog.models import (
    Audiobook,
    Author,
    CatalogOutbox,
    Narrator,
    OutboxEntity,
    OutboxOperation,
    audiobook_author,
    audiobook_narrator,
    cover_url,
    search_node_applied,
)
from audioverse.catalog.outbox import DRAIN_LOCK_ID, node_drain_lock_id
from audioverse.catalog.schemas import ReindexProgress, SearchNodeStatus, SearchStatus
from audioverse.catalog.services import (
    CARD_COLUMNS,
    AudiobookService,
    SynonymService,
    book_card,
    book_links,
    engine_errors_as_503,
)
from audioverse.config import Settings
from audioverse.db import take_turns
from audioverse.errors import Conflict
from audioverse.jobs import defer
from audioverse.leases import LeasedStatus
from audioverse.response_cache import bump_content_version
from search import SearchEngine, SearchEngineError, SearchEngineUnavailable
from search.documents import AudiobookDocument, PersonDocument, PersonKind
from search.embedded import EmbeddedSearchEngine
from search.meilisearch import MeilisearchEngine
from search.replicas import ReplicatedSearchEngine

SEARCH_STORE_NAMESPACE = "search"
REINDEX_TASK = "search.reindex"
REINDEX_STATUS_KEY = "reindex"
REINDEX_LEASE_KEY = "reindex:lease"
REINDEX_LEASE_SECONDS = 600
"""Longer than an engine task may take (300 s), so a slow batch never lets a second reindex start."""
REINDEX_CLAIM_LOCK_ID = 0x41565249
"""The PostgreSQL advisory lock key that serializes reindex claims ("AVRI")."""
REINDEX_ABANDONED = "The reindex stopped without finishing (its process ended); start another."
REINDEX_NOT_STARTED = "The reindex could not be started (its job was not saved); start another."
REINDEX_BATCH_SIZE = 5000
"""Books per reindex batch: at 100k books 5,000 took 31.6 s where 1,000 took 45.9 s (bench.search_at_scale)."""
DOCUMENT_CHUNK = 5000
"""Books whose documents one pair of statements reads (see :func:`audiobook_documents`)."""
REINDEX_BATCHES_AHEAD = 2
"""Batches read from the database ahead of the engine during a reindex."""
REINDEX_LOADS_IN_FLIGHT = 3
"""Batches the engine is loading at once during a reindex."""
PEOPLE: dict[OutboxEntity, tuple[PersonKind, type[Author] | type[Narrator]]] = {
    OutboxEntity.AUTHOR: ("author", Author),
    OutboxEntity.NARRATOR: ("narrator", Narrator),
}


def build_search_engine(settings: Settings) -> SearchEngine:
    """The engine the settings name: Meilisearch in production, tantivy in-process by default."""
    if settings.search_backend == "meilisearch":
        urls = settings.meilisearch_urls or [settings.meilisearch_url]
        nodes = [
            (url, MeilisearchEngine(url, settings.meilisearch_api_key, index=settings.search_index)) for url in urls
        ]
        return nodes[0][1] if len(nodes) == 1 else ReplicatedSearchEngine(nodes)
    return EmbeddedSearchEngine(settings.resolved_search_dir)


def search_store_for(settings: Settings) -> Store:
    """Where reindex progress lives: Redis (shared by API and workers) or this process's memory."""
    if settings.redis_url:
        root = RedisStore.with_client(url=settings.redis_url, namespace=settings.redis_namespace)
        return root.with_namespace(SEARCH_STORE_NAMESPACE)
    return MemoryStore()


async def audiobook_documents(session: AsyncSession, ids: Iterable[int]) -> list[AudiobookDocument]:
    """Documents for the books that exist among ``ids``, from plain rows in two statements a chunk.

    Chunked: renaming an author names every book of theirs, tens of thousands in a large catalog, and a
    statement takes at most 32,767 bound ids on PostgreSQL.
    """
    wanted = list(ids)
    documents: list[AudiobookDocument] = []
    for start in range(0, len(wanted), DOCUMENT_CHUNK):
        chunk = wanted[start : start + DOCUMENT_CHUNK]
        rows = (await session.execute(select(*CARD_COLUMNS).where(Audiobook.id.in_(chunk)))).all()
        documents += _documents(rows, await book_links(session, [row.id for row in rows]))
    return documents


async def audiobook_documents_after(session: AsyncSession, last_id: int, limit: int) -> list[AudiobookDocument]:
    """The documents of the ``limit`` books after id ``last_id``, in id order: a reindex batch, read as a range."""
    statement = select(*CARD_COLUMNS).where(Audiobook.id > last_id).order_by(Audiobook.id).limit(limit)
    rows = (await session.execute(statement)).all()
    if not rows:
        return []
    links = await book_links(session, [row.id for row in rows], every_id_between=(rows[0].id, rows[-1].id))
    return _documents(rows, links)


def _documents(rows: Sequence[Any], links: dict[int, dict[str, list[dict[str, Any]]]]) -> list[AudiobookDocument]:
    # ORM objects with three link collections each cost more than the queries: a reindex builds 100,000.
    fields = [
        {
            **row._mapping,
            "subtitle": row.subtitle or "",
            "average_rating": float(row.average_rating),
            "cover_url": cover_url(row.id, row.cover_key),
            **links[row.id],
            # A search answers its page from this: the book's list form, read with its document.
            "listing": msgspec.to_builtins(book_card(row, links[row.id])),
        }
        for row in rows
    ]
    return msgspec.convert(fields, list[AudiobookDocument])


def _link(model: type[Author] | type[Narrator]) -> Any:
    return audiobook_author.c.author_id if model is Author else audiobook_narrator.c.narrator_id


async def person_documents(
    session: AsyncSession, kind: PersonKind, model: type[Author] | type[Narrator], ids: Iterable[int] | None = None
) -> list[PersonDocument]:
    """Author or narrator documents with their book counts (all of them when ``ids`` is None)."""
    key = _link(model)
    count = select(func.count()).where(key == model.id).correlate(model).scalar_subquery()
    statement = select(model.id, model.name, count)
    if ids is not None:
        statement = statement.where(model.id.in_(list(ids)))
    rows = (await session.execute(statement)).all()
    return [PersonDocument(id=row[0], name=row[1], kind=kind, audiobooks_count=row[2]) for row in rows]


class Changes:
    """What a batch of outbox rows asks of the index, the latest row for an entity winning."""

    def __init__(self, rows: Iterable[CatalogOutbox]) -> None:
        self.books: dict[int, OutboxOperation] = {}
        self.people: dict[OutboxEntity, dict[int, OutboxOperation]] = {entity: {} for entity in PEOPLE}
        self.synonyms = False
        for row in rows:
            self.add(row)

    def add(self, row: CatalogOutbox) -> None:
        if row.entity == OutboxEntity.SYNONYMS:
            self.synonyms = True
            return
        target = self.books if row.entity == OutboxEntity.AUDIOBOOK else self.people[row.entity]
        if row.operation == OutboxOperation.RECOUNT and target.get(row.entity_id) == OutboxOperation.UPSERT:
            return  # the pending upsert refreshes the count too
        target[row.entity_id] = row.operation

    def ids(self, operations: dict[int, OutboxOperation], operation: OutboxOperation) -> set[int]:
        return {entity_id for entity_id, op in operations.items() if op == operation}


async def _apply(session: AsyncSession, engine: SearchEngine, changes: Changes) -> None:
    """Read every document the changes need, then send all the writes at once and wait for them together."""
    writes: list[Awaitable[None]] = []
    people_upserts: list[PersonDocument] = []
    book_upserts = changes.ids(changes.books, OutboxOperation.UPSERT)
    for entity, (kind, model) in PEOPLE.items():
        people = changes.people[entity]
        renamed = changes.ids(people, OutboxOperation.UPSERT)
        refreshed = renamed | changes.ids(people, OutboxOperation.RECOUNT)
        if renamed:
            # A person's name is inside every document of their books.
            key = _link(model)
            link_table = key.table
            book_upserts |= set(await session.scalars(select(link_table.c.audiobook_id).where(key.in_(renamed))))
        people_documents = await person_documents(session, kind, model, refreshed) if refreshed else []
        gone = changes.ids(people, OutboxOperation.DELETE) | (refreshed - {d.id for d in people_documents})
        people_upserts += people_documents
        writes.append(engine.delete_people(kind, sorted(gone)))
    documents = await audiobook_documents(session, book_upserts)
    deleted = changes.ids(changes.books, OutboxOperation.DELETE) | (book_upserts - {d.id for d in documents})
    if changes.synonyms:
        writes.append(engine.set_synonyms((await SynonymService(session=session).current()).sets))
    # One write per kind of change: each is an engine task whose latency the kick waits for.
    writes += [engine.upsert_people(people_upserts), engine.upsert(documents), engine.delete(sorted(deleted))]
    # Each write touches different documents, so their order does not matter; waiting for each engine
    # task in turn would add its whole latency to every kick.
    async with task_group_raising_first_failure() as group:
        for write in writes:
            group.start_soon(_run, write)


async def _run(write: Awaitable[None]) -> None:
    await write


@asynccontextmanager
async def task_group_raising_first_failure() -> AsyncIterator[TaskGroup]:
    """A task group whose failure surfaces as the first task's own exception (callers catch engine errors)."""
    try:
        async with anyio.create_task_group() as group:
            yield group
    except ExceptionGroup as failures:
        raise failures.exceptions[0] from failures


async def drain_outbox(database: SQLAlchemyAsyncConfig, engine: SearchEngine, batch_size: int) -> int:
    """Apply pending outbox rows to the engine (to each node of a replicated one); how many were applied.

    Rows are marked done only after the engine confirms. Drains take turns, whatever process runs them:
    each batch holds a turn (:func:`take_turns`) from reading its rows and documents to committing them.
    Two drains at once would each write the documents they read, in whichever order their engine writes
    land, so a book edited between the two reads could stay indexed as it was before the edit. An engine
    failure rolls the batch back, leaving its rows for the next attempt.

    Several nodes (:class:`ReplicatedSearchEngine`) each drain on their own, with a turn and a cursor of
    their own (``search_node_applied``): a node that is down keeps its rows while the others go on, and
    catches up from them when it is back. A row is processed once every node has taken it in. The first
    node's failure is raised after the others drained, so the job is retried for it.
    """
    if not isinstance(engine, ReplicatedSearchEngine):
        return await _drain_into(database, engine, batch_size)
    names = [node.name for node in engine.nodes]
    drained = 0
    failure: SearchEngineError | None = None
    for node in engine.nodes:
        try:
            if not node.prepared:
                await _prepare(database, node.engine)
                node.prepared = True
            drained += await _drain_into(database, node.engine, batch_size, node=node.name)
        except SearchEngineUnavailable as exc:
            engine.failed(node)
            failure = failure or exc
        else:
            engine.answered(node)
    await _settle(database, names)
    if failure is not None:
        raise failure
    return drained


async def _prepare(database: SQLAlchemyAsyncConfig, engine: SearchEngine) -> None:
    """Settings and synonyms onto a node before its first change: it may have been down at start, or new."""
    await engine.configure()
    async with database.get_session() as session:
        synonyms = await SynonymService(session=session).current()
    await engine.set_synonyms(synonyms.sets)


async def _drain_into(
    database: SQLAlchemyAsyncConfig, engine: SearchEngine, batch_size: int, *, node: str | None = None
) -> int:
    """Apply pending rows to one engine; with ``node``, the rows that node has not taken in, recorded as taken."""
    drained = 0
    while True:
        async with database.get_session() as session:
            pending = select(CatalogOutbox).where(CatalogOutbox.processed_at.is_(None))
            if node is None:
                await take_turns(session, DRAIN_LOCK_ID)
                pending = pending.with_for_update(skip_locked=True)
            else:
                # Turns per node: nodes drain side by side, each in its own order.
                await take_turns(session, node_drain_lock_id(node))
                pending = pending.where(not_taken_in_by(node))
            rows = (await session.scalars(pending.order_by(CatalogOutbox.id).limit(batch_size))).all()
            if not rows:
                return drained
            await _apply(session, engine, Changes(rows))
            if node is None:
                await session.execute(
                    update(CatalogOutbox)
                    .where(CatalogOutbox.id.in_([row.id for row in rows]))
                    .values(processed_at=datetime.now(UTC))
                    .execution_options(synchronize_session=False)
                )
            else:
                await session.execute(
                    insert(search_node_applied), [{"outbox_id": row.id, "node": node} for row in rows]
                )
            await session.commit()
            drained += len(rows)


def not_taken_in_by(node: str) -> ColumnElement[bool]:
    """Outbox rows with no record that ``node`` took them in: beside ``processed_at IS NULL``, its cursor."""
    taken = select(search_node_applied.c.outbox_id).where(
        search_node_applied.c.outbox_id == CatalogOutbox.id, search_node_applied.c.node == node
    )
    return ~taken.exists()


async def _settle(database: SQLAlchemyAsyncConfig, nodes: Sequence[str]) -> None:
    """Mark processed the rows every node has taken in, and forget the nodes' records of them.

    Run after the nodes' drains commit, not inside them: two nodes' drains committing at once would each
    miss the other's record, while the later drain's settle sees both.
    """
    everywhere = (
        select(search_node_applied.c.outbox_id)
        .where(search_node_applied.c.node.in_(nodes))
        .group_by(search_node_applied.c.outbox_id)
        .having(func.count() == len(nodes))
    )
    async with database.get_session() as session:
        await session.execute(
            update(CatalogOutbox)
            .where(CatalogOutbox.processed_at.is_(None), CatalogOutbox.id.in_(everywhere))
            .values(processed_at=datetime.now(UTC))
            .execution_options(synchronize_session=False)
        )
        processed = select(CatalogOutbox.id).where(
            CatalogOutbox.id == search_node_applied.c.outbox_id, CatalogOutbox.processed_at.is_not(None)
        )
        await session.execute(delete(search_node_applied).where(processed.exists()))
        await session.commit()


async def _reapply_since(database: SQLAlchemyAsyncConfig, engine: SearchEngine, watermark: int) -> None:
    """Apply again, from the current rows, every change recorded after outbox row ``watermark``."""
    async with database.get_session() as session:
        rows = await session.scalars(
            select(CatalogOutbox).where(CatalogOutbox.id > watermark).order_by(CatalogOutbox.id)
        )
        await _apply(session, engine, Changes(rows))


class ReindexStatus(msgspec.Struct):
    state: Literal["idle", "running", "succeeded", "failed"] = "idle"
    job_id: str | None = None
    processed: int = 0
    total: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None


def _leased_status(store: Store) -> LeasedStatus[ReindexStatus]:
    return LeasedStatus(
        store,
        REINDEX_STATUS_KEY,
        REINDEX_LEASE_KEY,
        REINDEX_LEASE_SECONDS,
        ReindexStatus,
        is_running=lambda status: status.state == "running",
        abandoned=lambda status: msgspec.structs.replace(status, state="failed", error=REINDEX_ABANDONED),
    )


async def read_status(store: Store) -> ReindexStatus:
    """The last reindex's status; a running one whose process ended without saying so reads as failed."""
    return await _leased_status(store).read() or ReindexStatus()


async def write_status(store: Store, status: ReindexStatus) -> None:
    """Save progress; while running, each write also renews the lease that says the reindex is alive."""
    await _leased_status(store).write(status, holder=status.job_id or "")


async def claim_reindex(store: Store, session: AsyncSession) -> ReindexStatus:
    """Mark a reindex as started; 409 while another one runs.

    A turn held to the end of ``session``'s transaction serializes claims across API processes, so of
    requests sent together (a double click) exactly one starts.
    """
    await take_turns(session, REINDEX_CLAIM_LOCK_ID)
    current = await read_status(store)
    if current.state == "running":
        raise Conflict("A reindex is already running.", extra={"job_id": current.job_id})
    status = ReindexStatus(state="running", job_id=uuid.uuid4().hex, started_at=datetime.now(UTC))
    await write_status(store, status)
    return status


async def abandon_claim(store: Store, status: ReindexStatus) -> None:
    """Release a claim whose job was never saved, so it reads as failed now rather than running for the lease."""
    failed = msgspec.structs.replace(status, state="failed", error=REINDEX_NOT_STARTED, finished_at=datetime.now(UTC))
    await write_status(store, failed)


async def start_reindex(store: Store, session: AsyncSession) -> str:
    """Claim a reindex and save its job, committing ``session``; the job's id. 409 while another one runs."""
    status = await claim_reindex(store, session)
    await defer(session, REINDEX_TASK, msgspec.to_builtins(status))
    try:
        # Committed here rather than after the request: a claim whose job was not saved must not
        # read as running until its lease lapses.
        await session.commit()
    except Exception:
        await abandon_claim(store, status)
        raise
    assert status.job_id is not None  # noqa: S101 - claim_reindex always sets it
    return status.job_id


async def rebuild_an_empty_index(engine: SearchEngine, database: SQLAlchemyAsyncConfig, store: Store) -> str | None:
    """Start a reindex when the index holds no book and the catalog has books the outbox will not bring.

    A new engine, an index lost with its disk, or one written by an older version with other fields
    (the embedded engine then starts empty) would otherwise find nothing until a curator reindexed.
    """
    try:
        if await engine.count() > 0:
            return None
    except SearchEngineError:
        return None  # the engine is down: /api/ready says so, and the drains catch up when it is back
    async with database.get_session() as session:
        books = await session.scalar(select(func.count()).select_from(Audiobook)) or 0
        # Books still waiting in the outbox are the drain's (a first start that seeded the catalog):
        # a reindex beside it would only load them twice.
        waiting = await session.scalar(
            select(func.count(CatalogOutbox.entity_id.distinct())).where(
                CatalogOutbox.processed_at.is_(None),
                CatalogOutbox.entity == OutboxEntity.AUDIOBOOK,
                CatalogOutbox.operation == OutboxOperation.UPSERT,
            )
        )
        if books <= (waiting or 0):
            return None
        try:
            return await start_reindex(store, session)
        except Conflict:
            return None  # another process is rebuilding it


async def reindex(
    database: SQLAlchemyAsyncConfig,
    engine: SearchEngine,
    store: Store,
    status: ReindexStatus,
    *,
    batch_size: int = REINDEX_BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> ReindexStatus:
    """Build a fresh index from the database beside the live one and swap it in atomically.

    Catalog changes during the rebuild reach both indexes (the engine writes to both while a staging
    index exists); a change whose batch was read before it and loaded after it is applied once more
    after the swap, from the outbox rows newer than the start.
    """
    try:
        await engine.create_staging_index()
        async with database.get_session() as session:
            watermark = await session.scalar(select(func.max(CatalogOutbox.id))) or 0
            status.total = await session.scalar(select(func.count()).select_from(Audiobook)) or 0
            for kind, model in PEOPLE.values():
                await engine.load_staging(people=await person_documents(session, kind, model))
        batches_out, batches_in = anyio.create_memory_object_stream[list[AudiobookDocument]](REINDEX_BATCHES_AHEAD)

        async def read_batches() -> None:
            async with batches_out:
                last_id = 0
                while True:
                    async with database.get_session() as session:
                        documents = await audiobook_documents_after(session, last_id, batch_size)
                    if not documents:
                        return
                    last_id = documents[-1].id
                    await batches_out.send(documents)

        async def load_batches() -> None:
            async for documents in batches_in:
                await engine.load_staging(documents=documents)
                status.processed += len(documents)
                await write_status(store, status)
                if progress:
                    progress(status.processed, status.total)

        # Reading a batch from the database and the engine indexing another overlap; with several loads in
        # flight Meilisearch also batches consecutive tasks together.
        async with batches_in, task_group_raising_first_failure() as group:
            group.start_soon(read_batches)
            for _ in range(REINDEX_LOADS_IN_FLIGHT):
                group.start_soon(load_batches)
        await engine.swap_in_staging()
        await _reapply_since(database, engine, watermark)
        await bump_content_version(store)
    except Exception as exc:
        status.state, status.error = "failed", f"{type(exc).__name__}: {exc}"
        # The engine may be what failed; a staging index left behind is dropped by the next reindex.
        with suppress(SearchEngineError):
            await engine.drop_staging()
        raise
    else:
        status.state = "succeeded"
    finally:
        status.finished_at = datetime.now(UTC)
        await write_status(store, status)
    return status


class PendingChanges(NamedTuple):
    changes: int
    lag_seconds: float
    """How long the oldest of them has waited."""
    last_synced_at: datetime | None


async def pending_changes(session: AsyncSession, now: datetime | None = None) -> PendingChanges:
    """The catalog changes the index has yet to take in, how long the oldest has waited, the last one taken in."""
    count, oldest = (
        await session.execute(
            select(func.count(), func.min(CatalogOutbox.created_at)).where(CatalogOutbox.processed_at.is_(None))
        )
    ).one()
    last = await session.scalar(select(func.max(CatalogOutbox.processed_at)))
    lag = 0.0 if oldest is None else max(0.0, ((now or datetime.now(UTC)) - oldest).total_seconds())
    return PendingChanges(count or 0, round(lag, 3), last)


async def index_status(engine: SearchEngine, store: Store, session: AsyncSession, index: str) -> SearchStatus:
    """How the index compares with the catalog: documents on each side, changes pending, the last reindex."""
    with engine_errors_as_503():
        in_index = await engine.count()
    pending = await pending_changes(session)
    job = await read_status(store)
    return SearchStatus(
        engine=engine.name,
        index=index,
        documents_in_index=in_index,
        documents_in_database=await AudiobookService(session=session).count(),
        pending_changes=pending.changes,
        sync_lag_seconds=pending.lag_seconds,
        last_synced_at=pending.last_synced_at,
        reindex=msgspec.convert(job, ReindexProgress, from_attributes=True),
        nodes=await node_statuses(engine, session),
    )


async def node_statuses(engine: SearchEngine, session: AsyncSession) -> list[SearchNodeStatus]:
    """Each node of a replicated engine: does it answer, how many changes has it yet to take in."""
    if not isinstance(engine, ReplicatedSearchEngine):
        return []
    statuses = []
    for node in engine.nodes:
        try:
            await node.engine.health()
        except SearchEngineError:
            reachable = False
        else:
            reachable = True
        pending = await session.scalar(
            select(func.count()).where(CatalogOutbox.processed_at.is_(None), not_taken_in_by(node.name))
        )
        statuses.append(SearchNodeStatus(node=node.name, reachable=reachable, pending_changes=pending or 0))
    return statuses

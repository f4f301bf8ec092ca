"""Writes a search-outbox row for every catalog change, inside the flush that makes the change.

The same transaction defers one ``search.drain`` job (see :mod:`audioverse.jobs`), which applies the
rows to the search engine once the change has committed. The hook is explicit: whatever opens a
database that may write the catalog (the app, the worker, the seed command) calls
:func:`install_catalog_outbox` on it; other sessions in the process are left alone.
"""

from __future__ import annotations

import weakref
import zlib
from collections.abc import Callable
from typing import Any

from advanced_alchemy.config import SQLAlchemyAsyncConfig
from sqlalchemy import event, insert, inspect
from sqlalchemy.orm import Session, UOWTransaction, sessionmaker

from audioverse.catalog.models import (
    Audiobook,
    Author,
    CatalogOutbox,
    Chapter,
    Genre,
    Narrator,
    OutboxEntity,
    OutboxOperation,
    SearchSynonyms,
)
from audioverse.db import session_factory
from audioverse.jobs import defer_sync
from audioverse.response_cache import STALE_KEY
from search import SearchEngine
from search.replicas import ReplicatedSearchEngine

Change = tuple[OutboxEntity, int, OutboxOperation]
DRAIN_TASK = "search.drain"

_INSTALLED: weakref.WeakSet[sessionmaker[Any]] = weakref.WeakSet()
"""Session factories whose flushes write outbox rows.

Not ``event.contains``: SQLAlchemy keys its listener registry by ``id()``, and a factory collected
without its listeners removed leaves its entry behind. A new factory at the same address then reads
as hooked and never is: its books never reached the index (1 of 20 in a CI run).
"""


def _people_recounted(book: Audiobook, *, whole: bool) -> set[Change]:
    """People who gained or lost ``book``: all of its people when it comes or goes, else those added or removed.

    Reads only what the flush already loaded (attribute history), so it never queries.
    """
    state = inspect(book)
    changes: set[Change] = set()
    for attribute, entity in (("authors", OutboxEntity.AUTHOR), ("narrators", OutboxEntity.NARRATOR)):
        history = state.attrs[attribute].history
        people = [*history.added, *history.deleted, *(history.unchanged if whole else ())]
        changes.update((entity, person.id, OutboxOperation.RECOUNT) for person in people)
    return changes


def _changes(session: Session) -> set[Change]:
    changes: set[Change] = set()
    deleted_books = {obj.id for obj in session.deleted if isinstance(obj, Audiobook)}
    for obj in session.deleted:
        if isinstance(obj, Audiobook):
            changes.add((OutboxEntity.AUDIOBOOK, obj.id, OutboxOperation.DELETE))
            changes |= _people_recounted(obj, whole=True)
        elif isinstance(obj, Chapter) and obj.audiobook_id not in deleted_books:
            changes.add((OutboxEntity.AUDIOBOOK, obj.audiobook_id, OutboxOperation.UPSERT))
        elif isinstance(obj, Author):
            changes.add((OutboxEntity.AUTHOR, obj.id, OutboxOperation.DELETE))
        elif isinstance(obj, Narrator):
            changes.add((OutboxEntity.NARRATOR, obj.id, OutboxOperation.DELETE))
    touched = list(session.new) + [obj for obj in session.dirty if session.is_modified(obj)]
    for obj in touched:
        if isinstance(obj, Audiobook):
            changes.add((OutboxEntity.AUDIOBOOK, obj.id, OutboxOperation.UPSERT))
            changes |= _people_recounted(obj, whole=obj in session.new)
        elif isinstance(obj, Chapter):
            changes.add((OutboxEntity.AUDIOBOOK, obj.audiobook_id, OutboxOperation.UPSERT))
        elif isinstance(obj, Author):
            # A renamed author changes every document of their books; the sync expands it.
            changes.add((OutboxEntity.AUTHOR, obj.id, OutboxOperation.UPSERT))
        elif isinstance(obj, Narrator):
            changes.add((OutboxEntity.NARRATOR, obj.id, OutboxOperation.UPSERT))
        elif isinstance(obj, SearchSynonyms):
            # Every search node applies the saved sets, one that is down as soon as it is back.
            changes.add((OutboxEntity.SYNONYMS, 0, OutboxOperation.UPSERT))
    return changes


def record_catalog_changes(session: Session, flush_context: UOWTransaction) -> None:
    """Same transaction, same connection: the row exists exactly when the change commits.

    The flush also marks cached responses stale once it commits (genres are shown, not indexed).
    """
    changes = _changes(session)
    if changes or any(isinstance(obj, Genre) for obj in (*session.new, *session.dirty, *session.deleted)):
        session.info[STALE_KEY] = True
    if changes:
        rows: list[dict[str, Any]] = [
            {"entity": entity, "entity_id": entity_id, "operation": operation}
            for entity, entity_id, operation in sorted(changes)
        ]
        session.connection().execute(insert(CatalogOutbox), rows)
        defer_sync(session, DRAIN_TASK)


def install_catalog_outbox(database: SQLAlchemyAsyncConfig) -> Callable[[], None]:
    """Write outbox rows in every flush of ``database``'s sessions; returns the call that stops it.

    Installing it again on the same database changes nothing (one flush writes its rows once).
    """
    factory = session_factory(database)
    if factory not in _INSTALLED:
        event.listen(factory, "after_flush", record_catalog_changes)
        _INSTALLED.add(factory)

    def uninstall() -> None:
        if factory in _INSTALLED:
            event.remove(factory, "after_flush", record_catalog_changes)
            _INSTALLED.discard(factory)

    return uninstall


DRAIN_LOCK_ID = 0x41564452
"""The PostgreSQL advisory lock key that makes outbox drains take turns ("AVDR")."""


def node_drain_lock_id(node: str) -> int:
    """The turn of one node's drains: the drain's lock id in the high half, the node's name in the low."""
    return (DRAIN_LOCK_ID << 32) | zlib.crc32(node.encode())


def drain_turns(engine: SearchEngine) -> list[int]:
    """The turns the drains into ``engine`` take: one, or one per node of a replicated engine."""
    if isinstance(engine, ReplicatedSearchEngine):
        return [node_drain_lock_id(node.name) for node in engine.nodes]
    return [DRAIN_LOCK_ID]

"""Progress saves that arrive together share one transaction: the write path is paid per batch, not per save.

Players save every few seconds, so progress saves are most of the API's writes. One save on its own
took eight round trips (pre-ping, BEGIN, the account, the book, the stored place, the upsert, the
ledger, COMMIT), each with SQLAlchemy's work around it, which held the service near 750 saves/s on
two cores. Here each process keeps one writer: the saves that arrive while it writes a batch wait
and form the next one, so under load a batch holds many (about eight at 16 connections) for the
same eight round trips, and an idle service writes a lone save at once, adding no wait. A save
still answers only after its batch commits: "saved" means in the database, as before.

On PostgreSQL a batch is set-based (arrays unnested into one statement each). On SQLite (the
embedded profile, one process) a batch saves one update after another in its one transaction.
A save that cannot be taken (no such book, past its end, stale, its token outlived) fails alone; a
batch the database refuses as a whole (a constraint, a deadlock) is retried one save at a time, so one
save's fault never fails another. A database out of reach fails the batch's saves together, at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

import structlog
from advanced_alchemy.config import SQLAlchemyAsyncConfig
from litestar.exceptions import NotAuthorizedException
from sqlalchemy import Executable, Select, Table, and_, bindparam, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.functions import Function

from audioverse.accounts.auth import TokenHolder, token_outlived
from audioverse.accounts.models import User
from audioverse.catalog.models import Audiobook, Chapter
from audioverse.db import commit_and_settle
from audioverse.errors import DomainError, Unprocessable
from audioverse.listening.models import ListeningProgress
from audioverse.listening.schemas import ProgressRead, ProgressWrite
from audioverse.listening.services import (
    LEDGER_COLUMNS,
    LEDGER_TABLE,
    PROGRESS_COLUMNS,
    PROGRESS_TABLE,
    BookAt,
    PlannedSave,
    ProgressKey,
    ProgressService,
    StoredPlace,
    added_listening,
    guarded_progress_upsert,
    no_such_book,
    plan_save,
    refusals,
    utcnow,
)

MAX_BATCH = 200
"""Saves written in one transaction at most; past it the rest wait for the next."""


@dataclass(eq=False)
class PendingSave:
    holder: TokenHolder
    audiobook_id: int
    data: ProgressWrite
    outcome: asyncio.Future[ProgressRead]

    @property
    def key(self) -> ProgressKey:
        return ProgressKey(self.holder.id, self.audiobook_id)


Outcome = ProgressRead | DomainError | NotAuthorizedException
ConfirmedSaves = Sequence[tuple[PendingSave, float]]
"""Saves whose token's account stands, each with the listener's default playback speed."""


class Account(NamedTuple):
    credentials_changed_at: datetime
    default_playback_speed: float


ACCOUNTS = select(User.id, User.credentials_changed_at, User.default_playback_speed).where(
    User.id.in_(bindparam("user_ids", expanding=True))
)


class ProgressSaves:
    """The API's progress saves in one process: queued, and written in batches by one writer task."""

    def __init__(self, database: SQLAlchemyAsyncConfig, max_batch: int = MAX_BATCH) -> None:
        self._database = database
        self._max_batch = max_batch
        self._queue: list[PendingSave] = []
        self._writer: asyncio.Task[None] | None = None

    async def save(self, holder: TokenHolder, audiobook_id: int, data: ProgressWrite) -> ProgressRead:
        """Save ``data`` for the token's holder once a batch takes it; what it stored, or the reason it did not."""
        outcome: asyncio.Future[ProgressRead] = asyncio.get_running_loop().create_future()
        self._queue.append(PendingSave(holder, audiobook_id, data, outcome))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queue())
        return await outcome

    async def _write_queue(self) -> None:
        while self._queue:
            batch, self._queue = next_batch(self._queue, self._max_batch)
            await self._write(batch)

    async def _write(self, batch: Sequence[PendingSave]) -> None:
        try:
            async with self._database.get_session() as session:
                outcomes: dict[PendingSave, Outcome | Exception] = dict(await self._outcomes(session, batch))
                await commit_and_settle(session)
        except Exception as exc:
            # A statement the database refused may be one save's fault; an unreachable or saturated
            # database (no connection, a pool timeout) is every save's, and retrying each would wait each out.
            if len(batch) > 1 and isinstance(exc, DBAPIError) and not exc.connection_invalidated:
                structlog.get_logger(__name__).warning(
                    "progress batch failed; saving its updates one at a time", saves=len(batch), error=repr(exc)
                )
                for save in batch:
                    await self._write([save])
                return
            outcomes = dict.fromkeys(batch, exc)
        for save in batch:
            if save.outcome.done():  # its request is gone; the save stands
                continue
            result = outcomes[save]
            if isinstance(result, ProgressRead):
                save.outcome.set_result(result)
            else:
                save.outcome.set_exception(result)

    async def _outcomes(self, session: AsyncSession, batch: Sequence[PendingSave]) -> dict[PendingSave, Outcome]:
        outcomes: dict[PendingSave, Outcome] = {}
        accounts = {
            user_id: Account(changed, speed)
            for user_id, changed, speed in await session.execute(
                ACCOUNTS, {"user_ids": sorted({save.holder.id for save in batch})}
            )
        }
        confirmed: list[tuple[PendingSave, float]] = []
        for save in sorted(batch, key=lambda save: save.key):
            account = accounts.get(save.holder.id)
            if account is None or token_outlived(save.holder.issued_at, account.credentials_changed_at):
                outcomes[save] = NotAuthorizedException()
            else:
                confirmed.append((save, account.default_playback_speed))
        if session.get_bind().dialect.name == "postgresql":
            outcomes |= await save_together(session, confirmed)
        else:
            outcomes |= await save_in_turn(session, confirmed)
        return outcomes


def next_batch(queue: Sequence[PendingSave], size: int) -> tuple[list[PendingSave], list[PendingSave]]:
    """The next batch (at most ``size``, one save per listener and book, in arrival order) and what waits.

    A second save of the same place waits for the next batch, so one device's saves apply in order.
    """
    batch: list[PendingSave] = []
    waiting: list[PendingSave] = []
    keys: set[ProgressKey] = set()
    for save in queue:
        if len(batch) < size and save.key not in keys:
            keys.add(save.key)
            batch.append(save)
        else:
            waiting.append(save)
    return batch, waiting


async def save_in_turn(session: AsyncSession, saves: ConfirmedSaves) -> dict[PendingSave, Outcome]:
    """Each save by the single-save path, one after another in ``session``'s transaction (any dialect)."""
    service = ProgressService(session=session)
    outcomes: dict[PendingSave, Outcome] = {}
    for save, default_speed in saves:
        try:
            outcomes[save] = await service.save(save.key, default_speed, save.data)
        except DomainError as exc:  # nothing of it was written: the guard refused, or it was refused before
            outcomes[save] = exc
    return outcomes


def unnested(table: Table, names: Sequence[str], alias: str) -> Any:
    """``unnest`` of one array parameter per column ``names`` of ``table``: rows to join or insert, one statement."""
    arrays = (bindparam(name, type_=postgresql.ARRAY(table.c[name].type)) for name in names)
    function: Function[Any] = func.unnest(*arrays)
    return function.table_valued(*names).render_derived(name=alias)


def as_arrays(rows: Iterable[dict[str, Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    listed = list(rows)
    return {name: [row[name] for row in listed] for name in names}


_WANTED = unnested(PROGRESS_TABLE, ("audiobook_id", "position_seconds"), "wanted")
# Each book's length and the chapter playing at each position asked for, in one read.
BOOKS_AT_POSITIONS = select(
    _WANTED.c.audiobook_id,
    _WANTED.c.position_seconds,
    Audiobook.duration_seconds,
    select(func.max(Chapter.chapter_number))
    .where(Chapter.audiobook_id == Audiobook.id, Chapter.start_time_seconds <= _WANTED.c.position_seconds)
    .scalar_subquery(),
).join_from(_WANTED, Audiobook, Audiobook.id == _WANTED.c.audiobook_id)


def stored_places() -> Select[Any]:
    """The stored places of the batch's keys, locked in key order (as every batch locks) so batches never deadlock."""
    keys = unnested(PROGRESS_TABLE, ("user_id", "audiobook_id"), "batch_keys")
    progress = PROGRESS_TABLE.c
    return (
        select(
            progress.user_id,
            progress.audiobook_id,
            progress.position_seconds,
            progress.effective_at,
            progress.playback_speed,
        )
        .join_from(
            PROGRESS_TABLE,
            keys,
            and_(progress.user_id == keys.c.user_id, progress.audiobook_id == keys.c.audiobook_id),
        )
        .order_by(progress.user_id, progress.audiobook_id)
        .with_for_update(of=ListeningProgress)
    )


STORED_PLACES = stored_places()


@cache
def progress_upsert_many(*, own_clock: bool) -> Executable:
    """The guarded upsert of many places, from arrays; returns the keys the guard took."""
    rows = unnested(PROGRESS_TABLE, PROGRESS_COLUMNS, "updates")
    insert = postgresql.insert(PROGRESS_TABLE).from_select(list(PROGRESS_COLUMNS), select(rows))
    return guarded_progress_upsert(insert, own_clock=own_clock)


def _ledger_upsert_many() -> Executable:
    rows = unnested(LEDGER_TABLE, LEDGER_COLUMNS, "listened")
    return added_listening(postgresql.insert(LEDGER_TABLE).from_select(list(LEDGER_COLUMNS), select(rows)))


LEDGER_UPSERT_MANY = _ledger_upsert_many()


async def save_together(session: AsyncSession, saves: ConfirmedSaves) -> dict[PendingSave, Outcome]:
    """The saves in a handful of set-based statements (PostgreSQL), whatever their number.

    ``saves`` are in key order, one per key: rows are locked and inserted in that order by every batch.
    """
    outcomes: dict[PendingSave, Outcome] = {}
    if not saves:
        return outcomes
    books = {
        (audiobook_id, position): BookAt(duration, chapter)
        for audiobook_id, position, duration, chapter in await session.execute(
            BOOKS_AT_POSITIONS,
            {
                "audiobook_id": [save.audiobook_id for save, _ in saves],
                "position_seconds": [save.data.position_seconds for save, _ in saves],
            },
        )
    }
    stored = {
        ProgressKey(user_id, audiobook_id): StoredPlace(position, effective_at, speed)
        for user_id, audiobook_id, position, effective_at, speed in await session.execute(
            STORED_PLACES,
            {
                "user_id": [save.key.user_id for save, _ in saves],
                "audiobook_id": [save.audiobook_id for save, _ in saves],
            },
        )
    }
    now = utcnow()
    plans: dict[ProgressKey, tuple[PendingSave, PlannedSave]] = {}
    for save, default_speed in saves:
        book = books.get((save.audiobook_id, save.data.position_seconds))
        if book is None:
            outcomes[save] = no_such_book(save.audiobook_id)
            continue
        try:
            plans[save.key] = (save, plan_save(save.key, save.data, book, stored.get(save.key), default_speed, now))
        except Unprocessable as exc:
            outcomes[save] = exc
    taken: set[ProgressKey] = set()
    for own_clock in (False, True):
        group = [plan.row for _, plan in plans.values() if plan.own_clock is own_clock]
        if group:
            parameters = as_arrays(group, PROGRESS_COLUMNS) | {
                "reorder_after": group[0]["reorder_after"],
                "handover_after": group[0]["handover_after"],
            }
            result = await session.execute(progress_upsert_many(own_clock=own_clock), parameters)
            taken.update(ProgressKey(*row) for row in result)
    conflicts = await refusals(session, [plan for key, (_, plan) in plans.items() if key not in taken])
    listened = []
    for key, (save, plan) in plans.items():
        if key in conflicts:
            outcomes[save] = conflicts[key]
            continue
        outcomes[save] = plan.answer
        if plan.listened_seconds > 0:
            listened.append(plan.ledger_row)
    if listened:
        await session.execute(LEDGER_UPSERT_MANY, as_arrays(listened, LEDGER_COLUMNS))
    return outcomes

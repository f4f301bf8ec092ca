"""Listening rules: newest-wins progress across devices, listened-time ledger, plays, bookmarks, library."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, NamedTuple, cast

import msgspec
from advanced_alchemy.filters import LimitOffset
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import OffsetPagination, SQLAlchemyAsyncRepositoryService
from litestar.stores.base import Store
from sqlalchemy import (
    ColumnElement,
    Executable,
    Table,
    and_,
    bindparam,
    false,
    func,
    not_,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.base import ReadOnlyColumnCollection

from audioverse.accounts.models import User
from audioverse.catalog.models import Audiobook, Chapter
from audioverse.catalog.services import book_cards
from audioverse.catalog.views import chapter_reads
from audioverse.db import upsert_into
from audioverse.errors import Conflict, FieldError, NotFound, Unprocessable
from audioverse.listening.models import (
    Bookmark,
    LibraryEntry,
    LibraryRemoval,
    ListeningLedger,
    ListeningProgress,
    PlayWindow,
)
from audioverse.listening.schemas import (
    BookmarkPatch,
    BookmarkRead,
    BookmarkWrite,
    LibraryItem,
    ListeningItem,
    Playback,
    ProgressRead,
    ProgressWrite,
)
from audioverse.listening.views import progress_read
from audioverse.signing import nginx_secure_link, sign_stream_token

COMPLETION_TAIL_SECONDS = 30.0
PLAY_WINDOW = timedelta(minutes=30)
# A device's own updates arriving out of order (retries, parallel requests) are told apart by its own
# clock for this long after its last stored one; past it a device whose clock jumped back is believed.
REORDER_WINDOW = timedelta(minutes=2)
# Another device jumping back further than this so soon after a stored update is taken for a player that
# started at a stale position (often 0), not for the listener: it is answered 409 with the stored one.
HANDOVER_WINDOW = timedelta(seconds=30)
HANDOVER_REWIND_LIMIT_SECONDS = 60.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def effective_time(client_updated_at: datetime, client_sent_at: datetime | None, received_at: datetime) -> datetime:
    """When an update happened by the server's clock; never later than its receipt.

    With the device's sending time the update's age is measured on the device's own clock, so any
    offset of that clock cancels out; without it the client's stamp is believed up to the receipt.
    """
    if client_sent_at is not None:
        # An age longer than the Unix era (a clock at year 1, say) dates the update at its start, the
        # oldest an update can be, instead of a date before any the calendar holds.
        age = min(max(client_sent_at - client_updated_at, timedelta(0)), received_at - OLDEST_UPDATE)
        return received_at - age
    return min(client_updated_at, received_at)


OLDEST_UPDATE = datetime(1970, 1, 1, tzinfo=UTC)


def stale_update(incoming: ReadOnlyColumnCollection[str, Any], *, own_clock: bool) -> ColumnElement[bool]:
    """The SQL condition under which the stored progress refuses an update (the upsert's guard).

    ``incoming`` is the upsert's ``excluded`` row (its ``device_id``, ``client_updated_at``,
    ``effective_at`` and ``position_seconds``); bound later: the moments ``reorder_after``
    (now - REORDER_WINDOW) and ``handover_after`` (now - HANDOVER_WINDOW). A device's own order (its
    clock) only counts for an update stamped by that clock (``own_clock``): one without
    ``client_updated_at`` is dated by the server and ordered by its arrival.
    """
    stored = ListeningProgress.__table__.c
    same_device = stored.device_id.is_not_distinct_from(incoming.device_id)
    own_clock_says_older = (
        and_(
            same_device,
            stored.client_updated_at >= incoming.client_updated_at,
            stored.updated_at > bindparam("reorder_after", type_=stored.updated_at.type),
        )
        if own_clock
        else false()
    )
    return or_(
        stored.effective_at >= incoming.effective_at,
        own_clock_says_older,
        and_(
            not_(same_device),
            stored.updated_at > bindparam("handover_after", type_=stored.updated_at.type),
            stored.position_seconds - HANDOVER_REWIND_LIMIT_SECONDS > incoming.position_seconds,
        ),
    )


PROGRESS_COLUMNS = (
    "user_id",
    "audiobook_id",
    "position_seconds",
    "is_completed",
    "playback_speed",
    "client_updated_at",
    "effective_at",
    "device_id",
    "last_listened_at",
    "completed_at",
    "created_at",
    "updated_at",
)


PROGRESS_TABLE = cast("Table", ListeningProgress.__table__)
LEDGER_TABLE = cast("Table", ListeningLedger.__table__)


def guarded_progress_upsert(insert: postgresql.Insert | sqlite.Insert, *, own_clock: bool) -> Executable:
    """``insert`` (of :data:`PROGRESS_COLUMNS`) made an upsert that the guard (:func:`stale_update`) may refuse."""
    table = PROGRESS_TABLE
    kept = {"user_id", "audiobook_id", "created_at"}
    changed: dict[str, Any] = {name: insert.excluded[name] for name in PROGRESS_COLUMNS if name not in kept}
    # Keep the first completion time when a finished book is touched again.
    changed["completed_at"] = func.coalesce(table.c.completed_at, insert.excluded.completed_at)
    return insert.on_conflict_do_update(
        index_elements=["user_id", "audiobook_id"],
        set_=changed,
        where=not_(stale_update(insert.excluded, own_clock=own_clock)),
    ).returning(table.c.user_id, table.c.audiobook_id)


@cache
def progress_upsert(dialect: str, *, own_clock: bool) -> Executable:
    """The guarded upsert of one listener's place in a book, built once per dialect: only parameters vary.

    Built per request it cost a tenth of a save's CPU (the ``excluded`` alias alone); it returns the
    row's key when the update is taken and nothing when the guard refuses it.
    """
    table = PROGRESS_TABLE
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).values(
        {name: bindparam(name, type_=table.c[name].type) for name in PROGRESS_COLUMNS}
    )
    return guarded_progress_upsert(insert, own_clock=own_clock)


def added_listening(insert: postgresql.Insert | sqlite.Insert) -> Executable:
    """``insert`` (of a ledger row) made to add its seconds to the listener's day with the book."""
    table = LEDGER_TABLE
    return insert.on_conflict_do_update(
        index_elements=["user_id", "audiobook_id", "day"],
        set_={"seconds": table.c.seconds + insert.excluded.seconds, "updated_at": insert.excluded.updated_at},
    )


LEDGER_COLUMNS = ("user_id", "audiobook_id", "day", "seconds", "created_at", "updated_at")


@cache
def ledger_upsert(dialect: str) -> Executable:
    """Add seconds to a listener's day with a book, built once per dialect."""
    table = LEDGER_TABLE
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).values(
        {name: bindparam(name, type_=table.c[name].type) for name in LEDGER_COLUMNS}
    )
    return added_listening(insert)


# The book's length and the chapter playing at a position, in one read.
BOOK_AND_CHAPTER_AT = select(
    Audiobook.duration_seconds,
    select(func.max(Chapter.chapter_number))
    .where(Chapter.audiobook_id == Audiobook.id, Chapter.start_time_seconds <= bindparam("position_seconds"))
    .scalar_subquery(),
).where(Audiobook.id == bindparam("audiobook_id"))
# What the next update is measured against; locked so two updates of one place take turns.
STORED_PLACE = (
    select(ListeningProgress.position_seconds, ListeningProgress.effective_at, ListeningProgress.playback_speed)
    .where(
        ListeningProgress.user_id == bindparam("user_id"), ListeningProgress.audiobook_id == bindparam("audiobook_id")
    )
    .with_for_update()
)


class StoredPlace(NamedTuple):
    position_seconds: float
    effective_at: datetime
    playback_speed: float


def conflict_detail(
    stored: ListeningProgress, device_id: str | None, effective_at: datetime, position: float, now: datetime
) -> str:
    handover = (
        stored.device_id != device_id
        and stored.effective_at < effective_at
        and stored.updated_at > now - HANDOVER_WINDOW
        and stored.position_seconds - HANDOVER_REWIND_LIMIT_SECONDS > position
    )
    if handover:
        return (
            "Another device saved a later position moments ago; resume from `progress` "
            f"(jumping back further than {HANDOVER_REWIND_LIMIT_SECONDS:.0f} s is accepted "
            f"{HANDOVER_WINDOW.total_seconds():.0f} s after its update)."
        )
    return "A newer update is already stored; resume from `progress`."


def listened_seconds(previous: StoredPlace | None, position: float, speed: float, at: datetime) -> float:
    """Time listened between two updates: forward movement, at most the server-clock time times speed.

    A seek forward moves the position far more than the clock allows, so it adds (almost) nothing.
    """
    if previous is None or position <= previous.position_seconds:
        return 0.0
    elapsed = (at - previous.effective_at).total_seconds()
    return max(0.0, min(position - previous.position_seconds, elapsed * speed))


def stream_url(audiobook_id: int, token: str) -> str:
    return f"/api/audiobooks/{audiobook_id}/stream/?token={token}"


# Reads the listening services share: the book, its chapters, a listener's progress, a page's books.


def no_such_book(audiobook_id: int) -> NotFound:
    return NotFound(f"No audiobook with id {audiobook_id}.")


async def find_book(session: AsyncSession, audiobook_id: int) -> Audiobook:
    book = await session.get(Audiobook, audiobook_id)
    if book is None:
        raise no_such_book(audiobook_id)
    return book


async def chapters_by_book(session: AsyncSession, audiobook_ids: Sequence[int]) -> dict[int, list[Chapter]]:
    chapters: dict[int, list[Chapter]] = {}
    if audiobook_ids:
        for chapter in await session.scalars(
            select(Chapter).where(Chapter.audiobook_id.in_(audiobook_ids)).order_by(Chapter.chapter_number)
        ):
            chapters.setdefault(chapter.audiobook_id, []).append(chapter)
    return chapters


async def progress_by_book(
    session: AsyncSession, user_id: int, audiobook_ids: Sequence[int]
) -> dict[int, ListeningProgress]:
    if not audiobook_ids:
        return {}
    rows = await session.scalars(
        select(ListeningProgress)
        .where(ListeningProgress.user_id == user_id, ListeningProgress.audiobook_id.in_(audiobook_ids))
        # The row may have just been rewritten by a Core upsert behind the identity map's back.
        .execution_options(populate_existing=True)
    )
    return {row.audiobook_id: row for row in rows}


async def progress_of(session: AsyncSession, user_id: int, audiobook_id: int) -> ListeningProgress | None:
    return (await progress_by_book(session, user_id, [audiobook_id])).get(audiobook_id)


async def progress_read_of(session: AsyncSession, progress: ListeningProgress) -> ProgressRead:
    chapters = await chapters_by_book(session, [progress.audiobook_id])
    return progress_read(progress, chapters.get(progress.audiobook_id, []))


class ProgressKey(NamedTuple):
    user_id: int
    audiobook_id: int


class BookAt(NamedTuple):
    """A book's length and the chapter playing at a position (:data:`BOOK_AND_CHAPTER_AT`)."""

    duration_seconds: float
    chapter: int | None


class PlannedSave(NamedTuple):
    """What saving one update writes, and answers if the guard takes it."""

    key: ProgressKey
    data: ProgressWrite
    row: dict[str, Any]
    """The upsert's parameters: :data:`PROGRESS_COLUMNS` and the guard's moments."""
    own_clock: bool
    listened_seconds: float
    now: datetime
    answer: ProgressRead

    @property
    def ledger_row(self) -> dict[str, Any]:
        return {
            "user_id": self.key.user_id,
            "audiobook_id": self.key.audiobook_id,
            "day": self.now.date(),
            "seconds": self.listened_seconds,
            "created_at": self.now,
            "updated_at": self.now,
        }


def plan_save(
    key: ProgressKey,
    data: ProgressWrite,
    book: BookAt,
    previous: StoredPlace | None,
    default_speed: float,
    now: datetime,
) -> PlannedSave:
    """The row an update writes over ``previous`` (the stored place), or ``Unprocessable`` past the book's end."""
    if data.position_seconds > book.duration_seconds:
        raise Unprocessable(
            f"The position is past the end of the book ({book.duration_seconds:.3f} s).",
            errors=[FieldError(field="position_seconds", message="Must lie within the book's duration.")],
        )
    client_stamp = as_utc(data.client_updated_at) if data.client_updated_at else None
    stamp = client_stamp or now
    # A sending time only means something beside a stamp from the same (device) clock.
    sent = as_utc(data.client_sent_at) if data.client_sent_at and data.client_updated_at else None
    effective = effective_time(stamp, sent, now)
    speed = data.playback_speed or (previous.playback_speed if previous else default_speed)
    completed = bool(data.is_completed) or data.position_seconds >= book.duration_seconds - COMPLETION_TAIL_SECONDS
    if data.is_completed is False:
        completed = False
    row = {
        "user_id": key.user_id,
        "audiobook_id": key.audiobook_id,
        "position_seconds": data.position_seconds,
        "is_completed": completed,
        "playback_speed": speed,
        "client_updated_at": stamp,
        "effective_at": effective,
        "device_id": data.device_id,
        "last_listened_at": now,
        "completed_at": now if completed else None,
        "created_at": now,
        "updated_at": now,
        "reorder_after": now - REORDER_WINDOW,
        "handover_after": now - HANDOVER_WINDOW,
    }
    return PlannedSave(
        key=key,
        data=data,
        row=row,
        own_clock=client_stamp is not None,
        listened_seconds=listened_seconds(previous, data.position_seconds, speed, effective),
        now=now,
        answer=ProgressRead(
            audiobook_id=key.audiobook_id,
            position_seconds=data.position_seconds,
            is_completed=completed,
            playback_speed=speed,
            current_chapter=book.chapter,
            last_listened_at=now,
            updated_at=now,
        ),
    )


async def refusals(session: AsyncSession, plans: Sequence[PlannedSave]) -> dict[ProgressKey, Conflict]:
    """The 409s for updates the guard refused, each with the stored place that refused it (two reads in all)."""
    if not plans:
        return {}
    refusing = {
        ProgressKey(row.user_id, row.audiobook_id): row
        for row in await session.scalars(
            select(ListeningProgress)
            .where(tuple_(ListeningProgress.user_id, ListeningProgress.audiobook_id).in_([plan.key for plan in plans]))
            # The rows were just refused by a Core upsert, behind the identity map's back.
            .execution_options(populate_existing=True)
        )
    }
    chapters = await chapters_by_book(session, sorted({plan.key.audiobook_id for plan in plans}))
    conflicts: dict[ProgressKey, Conflict] = {}
    for plan in plans:
        stored = refusing[plan.key]  # only a stored row can refuse an update
        conflicts[plan.key] = Conflict(
            conflict_detail(
                stored, plan.data.device_id, plan.row["effective_at"], plan.data.position_seconds, plan.now
            ),
            extra={"progress": msgspec.to_builtins(progress_read(stored, chapters.get(stored.audiobook_id, [])))},
        )
    return conflicts


class ProgressRepository(SQLAlchemyAsyncRepository[ListeningProgress]):
    model_type = ListeningProgress


class ProgressService(SQLAlchemyAsyncRepositoryService[ListeningProgress]):
    """A listener's place in each book, newest update across devices winning, and the listening lists."""

    repository_type = ProgressRepository
    # A separate COUNT keeps the total right on pages past the end (a window count sees no rows there).
    count_with_window_function = False

    async def read(self, user: User, audiobook_id: int) -> ProgressRead:
        session = self.repository.session
        progress = await progress_of(session, user.id, audiobook_id)
        if progress is None:
            raise NotFound("You have not started this audiobook.")
        return await progress_read_of(session, progress)

    async def save(self, key: ProgressKey, default_speed: float, data: ProgressWrite) -> ProgressRead:
        """Store the update unless it is stale (see ``stale_update``): one guarded upsert, race-free.

        Four statements: the book with the chapter at the new position, the stored place (locked), the
        upsert, and the listened seconds; the answer is what the upsert wrote, so nothing is read back.
        ``default_speed`` is the listener's, for a first save that names none. The API calls this through
        :mod:`audioverse.listening.progress_batch`, which on PostgreSQL saves many at once instead.
        """
        session = self.repository.session
        found = (
            await session.execute(
                BOOK_AND_CHAPTER_AT, {"audiobook_id": key.audiobook_id, "position_seconds": data.position_seconds}
            )
        ).one_or_none()
        if found is None:
            raise no_such_book(key.audiobook_id)
        stored = (await session.execute(STORED_PLACE, key._asdict())).one_or_none()
        plan = plan_save(key, data, BookAt(*found), StoredPlace(*stored) if stored else None, default_speed, utcnow())
        upsert = progress_upsert(session.get_bind().dialect.name, own_clock=plan.own_clock)
        if (await session.execute(upsert, plan.row)).one_or_none() is None:
            raise (await refusals(session, [plan]))[plan.key]
        if plan.listened_seconds > 0:
            await session.execute(ledger_upsert(session.get_bind().dialect.name), plan.ledger_row)
        return plan.answer

    async def listening_page(
        self, user: User, page: LimitOffset, *, completed: bool | None
    ) -> OffsetPagination[ListeningItem]:
        """The books the listener has started (``completed`` narrows), most recently listened first."""
        filters: list[ColumnElement[bool]] = [ListeningProgress.user_id == user.id]
        if completed is not None:
            filters.append(ListeningProgress.is_completed.is_(completed))
        rows, total = await self.get_many_and_count(
            *filters,
            page,
            order_by=[ListeningProgress.last_listened_at.desc(), ListeningProgress.id.desc()],
        )
        session = self.repository.session
        ids = [row.audiobook_id for row in rows]
        books = await book_cards(session, ids)
        chapters = await chapters_by_book(session, ids)
        items = [
            {
                "audiobook": books[row.audiobook_id],
                "progress": progress_read(row, chapters.get(row.audiobook_id, [])),
            }
            for row in rows
        ]
        return self.to_schema(items, total, filters=[page], schema_type=ListeningItem)


class StreamTarget(msgspec.Struct, frozen=True, array_like=True):
    """What a stream request needs of its book: where the audio is stored and its media type."""

    audio_key: str
    mime_type: str


STREAM_TARGET_SECONDS = 3600


def _stream_target_key(audiobook_id: int) -> str:
    return f"stream-target:{audiobook_id}"


async def kept_stream_target(store: Store, audiobook_id: int) -> StreamTarget | None:
    """The book's audio as an earlier stream request read it, while no catalog change has happened since.

    A player sends a range request every few seconds; reading the book each time cost more than
    serving the bytes. ``store`` is the response cache's versioned store, so any committed catalog
    change (a deleted book among them) makes every kept answer stale, and the next request reads again.
    """
    kept = await store.get(_stream_target_key(audiobook_id))
    return None if kept is None else msgspec.msgpack.decode(kept, type=StreamTarget)


async def stream_target(session: AsyncSession, store: Store, audiobook_id: int) -> StreamTarget:
    """The audio of the book a stream request asks for, read and kept; ``NotFound`` if there is no such book."""
    row = (
        await session.execute(select(Audiobook.audio_key, Audiobook.mime_type).where(Audiobook.id == audiobook_id))
    ).one_or_none()
    if row is None:
        raise no_such_book(audiobook_id)
    target = StreamTarget(audio_key=row.audio_key, mime_type=row.mime_type)
    await store.set(_stream_target_key(audiobook_id), msgspec.msgpack.encode(target), expires_in=STREAM_TARGET_SECONDS)
    return target


class PlayWindowRepository(SQLAlchemyAsyncRepository[PlayWindow]):
    model_type = PlayWindow


class PlaybackService(SQLAlchemyAsyncRepositoryService[PlayWindow]):
    """Starting playback (what a player needs, a counted play) and finding the audio to stream."""

    repository_type = PlayWindowRepository

    async def start(
        self,
        user: User,
        audiobook_id: int,
        *,
        secret_key: str,
        valid_for: timedelta,
        secure_link_secret: str | None = None,
    ) -> Playback:
        """Everything a player needs, with a stream URL signed for this listener and book.

        With ``secure_link_secret`` (local audio behind nginx) the URL is one nginx checks and serves itself.
        """
        session = self.repository.session
        book = await find_book(session, audiobook_id)
        chapters = (await chapters_by_book(session, [audiobook_id])).get(audiobook_id, [])
        progress = await progress_of(session, user.id, audiobook_id)
        await self._count_play(user.id, audiobook_id)
        expires = utcnow().replace(microsecond=0) + valid_for
        if secure_link_secret is None:
            url = stream_url(audiobook_id, sign_stream_token(secret_key, user.id, audiobook_id, expires))
        else:
            url = nginx_secure_link(secure_link_secret, book.audio_key, expires)
        return Playback(
            stream_url=url,
            stream_url_expires_at=expires,
            mime_type=book.mime_type,
            duration_seconds=book.duration_seconds,
            chapters=chapter_reads(chapters),
            progress=progress_read(progress, chapters) if progress else None,
            playback_speed=progress.playback_speed if progress else user.default_playback_speed,
        )

    async def _count_play(self, user_id: int, audiobook_id: int) -> bool:
        """Count a play unless this user's last counted play of the book is under 30 minutes old."""
        session = self.repository.session
        now = utcnow()
        insert = upsert_into(session, PlayWindow).values(
            user_id=user_id, audiobook_id=audiobook_id, counted_at=now, created_at=now, updated_at=now
        )
        table = PlayWindow.__table__
        counted = (
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=["user_id", "audiobook_id"],
                    set_={"counted_at": now, "updated_at": now},
                    where=table.c.counted_at <= now - PLAY_WINDOW,
                ).returning(table.c.id)
            )
        ).scalar_one_or_none()
        if counted is None:
            return False
        await session.execute(
            update(Audiobook)
            .where(Audiobook.id == audiobook_id)
            .values(play_count=Audiobook.play_count + 1)
            .execution_options(synchronize_session=False)
        )
        return True


class BookmarkRepository(SQLAlchemyAsyncRepository[Bookmark]):
    model_type = Bookmark


class BookmarkService(SQLAlchemyAsyncRepositoryService[Bookmark]):
    """A listener's bookmarks: moments within a book's duration, seen by no one else."""

    repository_type = BookmarkRepository

    async def in_book(self, user: User, audiobook_id: int) -> list[BookmarkRead]:
        await find_book(self.repository.session, audiobook_id)
        rows = await self.get_many(
            Bookmark.user_id == user.id,
            Bookmark.audiobook_id == audiobook_id,
            order_by=[Bookmark.position_seconds.asc(), Bookmark.id.asc()],
        )
        return msgspec.convert(rows, list[BookmarkRead], from_attributes=True)

    async def add(self, user: User, audiobook_id: int, data: BookmarkWrite) -> BookmarkRead:
        await self._within(audiobook_id, data.position_seconds)
        bookmark = await self.create(
            Bookmark(
                user_id=user.id,
                audiobook_id=audiobook_id,
                position_seconds=data.position_seconds,
                title=data.title,
                note=data.note,
            )
        )
        return self.to_schema(bookmark, schema_type=BookmarkRead)

    async def change(self, user: User, bookmark_id: int, data: BookmarkPatch) -> BookmarkRead:
        bookmark = await self._own(user, bookmark_id)
        fields = {name: value for name, value in msgspec.structs.asdict(data).items() if value is not msgspec.UNSET}
        if "position_seconds" in fields:
            await self._within(bookmark.audiobook_id, fields["position_seconds"])
        for name, value in fields.items():
            setattr(bookmark, name, value)
        return self.to_schema(await self.update(bookmark), schema_type=BookmarkRead)

    async def remove(self, user: User, bookmark_id: int) -> None:
        await self.repository.session.delete(await self._own(user, bookmark_id))

    async def _own(self, user: User, bookmark_id: int) -> Bookmark:
        # Someone else's bookmark is as invisible as a missing one.
        bookmark = await self.get_one_or_none(id=bookmark_id, user_id=user.id)
        if bookmark is None:
            raise NotFound(f"No bookmark with id {bookmark_id}.")
        return bookmark

    async def _within(self, audiobook_id: int, position: float) -> None:
        book = await find_book(self.repository.session, audiobook_id)
        if position > book.duration_seconds:
            raise Unprocessable(
                f"The bookmark is past the end of the book ({book.duration_seconds:.3f} s).",
                errors=[FieldError(field="position_seconds", message="Must lie within the book's duration.")],
            )


class LibraryRepository(SQLAlchemyAsyncRepository[LibraryEntry]):
    model_type = LibraryEntry


class LibraryService(SQLAlchemyAsyncRepositoryService[LibraryEntry]):
    """A listener's library: the books they keep, on shelves, some marked favorite."""

    repository_type = LibraryRepository
    # A separate COUNT keeps the total right on pages past the end (a window count sees no rows there).
    count_with_window_function = False

    async def library_page(
        self, user: User, page: LimitOffset, *, shelf: str | None = None, favorites_only: bool = False
    ) -> OffsetPagination[LibraryItem]:
        """Most recently added first; favorites alone come most recently marked first."""
        filters: list[ColumnElement[bool]] = [LibraryEntry.user_id == user.id]
        if shelf is not None:
            filters.append(LibraryEntry.shelf == shelf)
        if favorites_only:
            filters.append(LibraryEntry.is_favorite.is_(True))
        newest = LibraryEntry.favorited_at if favorites_only else LibraryEntry.created_at
        entries, total = await self.get_many_and_count(*filters, page, order_by=[newest.desc(), LibraryEntry.id.desc()])
        return self.to_schema(await self._items(user, entries), total, filters=[page], schema_type=LibraryItem)

    async def add(self, user: User, audiobook_id: int, shelf: str | None) -> tuple[LibraryItem, bool]:
        """Idempotent: the entry and whether it was created now."""
        entry, created = await self._entry(user, audiobook_id, shelf)
        return await self._item(user, entry), created

    async def remove(self, user: User, audiobook_id: int) -> None:
        """Takes the book out of the library and remembers that it was taken out (see ``LibraryRemoval``)."""
        removed = await self.delete_where(user_id=user.id, audiobook_id=audiobook_id)
        if removed:
            session = self.repository.session
            await session.execute(
                upsert_into(session, LibraryRemoval)
                .values(user_id=user.id, audiobook_id=audiobook_id)
                .on_conflict_do_nothing(index_elements=["user_id", "audiobook_id"])
            )

    async def set_favorite(self, user: User, audiobook_id: int, favorite: bool) -> LibraryItem:
        """Marks (or unmarks) a favorite, adding the book to the library first if it is not there."""
        entry, _ = await self._entry(user, audiobook_id, None)
        entry.is_favorite = favorite
        entry.favorited_at = utcnow() if favorite else None
        await self.repository.session.flush()
        return await self._item(user, entry)

    async def _entry(self, user: User, audiobook_id: int, shelf: str | None) -> tuple[LibraryEntry, bool]:
        session = self.repository.session
        await find_book(session, audiobook_id)
        now = utcnow()
        insert = upsert_into(session, LibraryEntry).values(
            user_id=user.id, audiobook_id=audiobook_id, shelf=shelf, is_favorite=False, created_at=now, updated_at=now
        )
        created = (
            await session.execute(
                insert.on_conflict_do_nothing(index_elements=["user_id", "audiobook_id"]).returning(
                    LibraryEntry.__table__.c.id
                )
            )
        ).scalar_one_or_none() is not None
        entry = await self.get_one(user_id=user.id, audiobook_id=audiobook_id)
        if shelf is not None and entry.shelf != shelf:
            entry.shelf = shelf
            await session.flush()
        return entry, created

    async def _item(self, user: User, entry: LibraryEntry) -> LibraryItem:
        [item] = await self._items(user, [entry])
        return self.to_schema(item, schema_type=LibraryItem)

    async def _items(self, user: User, entries: Sequence[LibraryEntry]) -> list[dict[str, Any]]:
        """The wire form of library entries, with their books and the listener's progress: fixed queries."""
        session = self.repository.session
        ids = [entry.audiobook_id for entry in entries]
        books = await book_cards(session, ids)
        progress = await progress_by_book(session, user.id, ids)
        chapters = await chapters_by_book(session, ids)
        return [
            {
                "audiobook": books[entry.audiobook_id],
                "added_at": entry.created_at,
                "shelf": entry.shelf,
                "is_favorite": entry.is_favorite,
                "progress": progress_read(progress[entry.audiobook_id], chapters.get(entry.audiobook_id, []))
                if entry.audiobook_id in progress
                else None,
            }
            for entry in entries
        ]

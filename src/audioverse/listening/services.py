"""Listening rules: newest-wins progress across devices, listened-time ledger, plays, bookmarks, library."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, and_, func, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.models import User
from audioverse.catalog.models import Audiobook, Chapter
from audioverse.catalog.services import books_by_id
from audioverse.db import upsert_into
from audioverse.errors import Conflict, FieldError, NotFound, Unprocessable
from audioverse.listening.models import Bookmark, LibraryEntry, ListeningLedger, ListeningProgress, PlayWindow
from audioverse.listening.schemas import ProgressWrite
from audioverse.listening.views import progress_read

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
        return received_at - max(client_sent_at - client_updated_at, timedelta(0))
    return min(client_updated_at, received_at)


def stale_update(
    device_id: str | None, client_updated_at: datetime, effective_at: datetime, position: float, now: datetime
) -> ColumnElement[bool]:
    """The SQL condition under which the stored progress refuses an update (the upsert's guard)."""
    stored = ListeningProgress.__table__.c
    same_device = stored.device_id.is_not_distinct_from(device_id)
    return or_(
        stored.effective_at >= effective_at,
        and_(
            same_device,
            stored.client_updated_at >= client_updated_at,
            stored.updated_at > now - REORDER_WINDOW,
        ),
        and_(
            not_(same_device),
            stored.updated_at > now - HANDOVER_WINDOW,
            stored.position_seconds - HANDOVER_REWIND_LIMIT_SECONDS > position,
        ),
    )


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


def listened_seconds(previous: ListeningProgress | None, position: float, speed: float, at: datetime) -> float:
    """Time listened between two updates: forward movement, at most the server-clock time times speed.

    A seek forward moves the position far more than the clock allows, so it adds (almost) nothing.
    """
    if previous is None or position <= previous.position_seconds:
        return 0.0
    elapsed = (at - previous.effective_at).total_seconds()
    return max(0.0, min(position - previous.position_seconds, elapsed * speed))


class Listening:
    """Listening workflows for one request's session and caller."""

    def __init__(self, session: AsyncSession, user: User) -> None:
        self.session = session
        self.user = user

    async def book(self, audiobook_id: int) -> Audiobook:
        book = await self.session.get(Audiobook, audiobook_id)
        if book is None:
            raise NotFound(f"No audiobook with id {audiobook_id}.")
        return book

    async def chapters(self, audiobook_id: int) -> list[Chapter]:
        rows = await self.session.scalars(
            select(Chapter).where(Chapter.audiobook_id == audiobook_id).order_by(Chapter.chapter_number)
        )
        return list(rows)

    async def progress(self, audiobook_id: int) -> ListeningProgress | None:
        progress: ListeningProgress | None = await self.session.scalar(
            select(ListeningProgress)
            .where(ListeningProgress.user_id == self.user.id, ListeningProgress.audiobook_id == audiobook_id)
            # The row may have just been rewritten by a Core upsert behind the identity map's back.
            .execution_options(populate_existing=True)
        )
        return progress

    async def save_progress(self, audiobook_id: int, data: ProgressWrite) -> ListeningProgress:
        """Store the update unless it is stale (see ``stale_update``): one guarded upsert, race-free."""
        book = await self.book(audiobook_id)
        if data.position_seconds > book.duration_seconds:
            raise Unprocessable(
                f"The position is past the end of the book ({book.duration_seconds:.3f} s).",
                errors=[FieldError(field="position_seconds", message="Must lie within the book's duration.")],
            )
        now = utcnow()
        stamp = as_utc(data.client_updated_at or now)
        # A sending time only means something beside a stamp from the same (device) clock.
        sent = as_utc(data.client_sent_at) if data.client_sent_at and data.client_updated_at else None
        effective = effective_time(stamp, sent, now)
        previous = await self.session.scalar(
            select(ListeningProgress)
            .where(ListeningProgress.user_id == self.user.id, ListeningProgress.audiobook_id == audiobook_id)
            .with_for_update()
        )
        speed = data.playback_speed or (previous.playback_speed if previous else self.user.default_playback_speed)
        completed = bool(data.is_completed) or data.position_seconds >= book.duration_seconds - COMPLETION_TAIL_SECONDS
        if data.is_completed is False:
            completed = False
        values = {
            "user_id": self.user.id,
            "audiobook_id": audiobook_id,
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
        }
        insert = upsert_into(self.session, ListeningProgress).values(**values)
        table = ListeningProgress.__table__
        changed: dict[str, Any] = {
            name: insert.excluded[name] for name in values if name not in {"user_id", "audiobook_id", "created_at"}
        }
        # Keep the first completion time when a finished book is touched again.
        changed["completed_at"] = func.coalesce(table.c.completed_at, insert.excluded.completed_at)
        statement = insert.on_conflict_do_update(
            index_elements=["user_id", "audiobook_id"],
            set_=changed,
            where=not_(stale_update(data.device_id, stamp, effective, data.position_seconds, now)),
        ).returning(table.c.id)
        accepted = (await self.session.execute(statement)).scalar_one_or_none()
        if accepted is None:
            stored = await self.progress(audiobook_id)
            assert stored is not None  # noqa: S101 - only a stored row can refuse the update
            raise Conflict(
                conflict_detail(stored, data.device_id, effective, data.position_seconds, now),
                extra={"progress": await self.progress_body(stored)},
            )
        await self._add_listening(
            audiobook_id, listened_seconds(previous, data.position_seconds, speed, effective), now
        )
        saved = await self.progress(audiobook_id)
        assert saved is not None  # noqa: S101 - the upsert above just wrote it
        return saved

    async def progress_body(self, progress: ListeningProgress) -> dict[str, Any]:
        body: dict[str, Any] = msgspec.to_builtins(progress_read(progress, await self.chapters(progress.audiobook_id)))
        return body

    async def _add_listening(self, audiobook_id: int, seconds: float, at: datetime) -> None:
        if seconds <= 0:
            return
        insert = upsert_into(self.session, ListeningLedger).values(
            user_id=self.user.id,
            audiobook_id=audiobook_id,
            day=at.date(),
            seconds=seconds,
            created_at=at,
            updated_at=at,
        )
        await self.session.execute(
            insert.on_conflict_do_update(
                index_elements=["user_id", "audiobook_id", "day"],
                set_={"seconds": ListeningLedger.__table__.c.seconds + insert.excluded.seconds, "updated_at": at},
            )
        )

    async def count_play(self, audiobook_id: int) -> bool:
        """Count a play unless this user's last counted play of the book is under 30 minutes old."""
        now = utcnow()
        insert = upsert_into(self.session, PlayWindow).values(
            user_id=self.user.id, audiobook_id=audiobook_id, counted_at=now, created_at=now, updated_at=now
        )
        table = PlayWindow.__table__
        counted = (
            await self.session.execute(
                insert.on_conflict_do_update(
                    index_elements=["user_id", "audiobook_id"],
                    set_={"counted_at": now, "updated_at": now},
                    where=table.c.counted_at <= now - PLAY_WINDOW,
                ).returning(table.c.id)
            )
        ).scalar_one_or_none()
        if counted is None:
            return False
        await self.session.execute(
            update(Audiobook)
            .where(Audiobook.id == audiobook_id)
            .values(play_count=Audiobook.play_count + 1)
            .execution_options(synchronize_session=False)
        )
        return True

    # Bookmarks

    async def bookmarks(self, audiobook_id: int) -> Sequence[Bookmark]:
        await self.book(audiobook_id)
        return (
            await self.session.scalars(
                select(Bookmark)
                .where(Bookmark.user_id == self.user.id, Bookmark.audiobook_id == audiobook_id)
                .order_by(Bookmark.position_seconds, Bookmark.id)
            )
        ).all()

    async def _within(self, audiobook_id: int, position: float) -> None:
        book = await self.book(audiobook_id)
        if position > book.duration_seconds:
            raise Unprocessable(
                f"The bookmark is past the end of the book ({book.duration_seconds:.3f} s).",
                errors=[FieldError(field="position_seconds", message="Must lie within the book's duration.")],
            )

    async def add_bookmark(self, audiobook_id: int, position: float, title: str, note: str) -> Bookmark:
        await self._within(audiobook_id, position)
        bookmark = Bookmark(
            user_id=self.user.id, audiobook_id=audiobook_id, position_seconds=position, title=title, note=note
        )
        self.session.add(bookmark)
        await self.session.flush()
        return bookmark

    async def own_bookmark(self, bookmark_id: int) -> Bookmark:
        bookmark = await self.session.get(Bookmark, bookmark_id)
        # Someone else's bookmark is as invisible as a missing one.
        if bookmark is None or bookmark.user_id != self.user.id:
            raise NotFound(f"No bookmark with id {bookmark_id}.")
        return bookmark

    async def change_bookmark(self, bookmark_id: int, fields: dict[str, Any]) -> Bookmark:
        bookmark = await self.own_bookmark(bookmark_id)
        if "position_seconds" in fields:
            await self._within(bookmark.audiobook_id, fields["position_seconds"])
        for name, value in fields.items():
            setattr(bookmark, name, value)
        await self.session.flush()
        await self.session.refresh(bookmark)
        return bookmark

    async def delete_bookmark(self, bookmark_id: int) -> None:
        await self.session.delete(await self.own_bookmark(bookmark_id))

    # Library

    async def library_entry(self, audiobook_id: int) -> LibraryEntry | None:
        entry: LibraryEntry | None = await self.session.scalar(
            select(LibraryEntry).where(LibraryEntry.user_id == self.user.id, LibraryEntry.audiobook_id == audiobook_id)
        )
        return entry

    async def add_to_library(self, audiobook_id: int, shelf: str | None) -> tuple[LibraryEntry, bool]:
        """Idempotent: the entry and whether it was created now."""
        await self.book(audiobook_id)
        insert = upsert_into(self.session, LibraryEntry).values(
            user_id=self.user.id, audiobook_id=audiobook_id, shelf=shelf, is_favorite=False,
            created_at=utcnow(), updated_at=utcnow(),
        )  # fmt: skip
        created = (
            await self.session.execute(
                insert.on_conflict_do_nothing(index_elements=["user_id", "audiobook_id"]).returning(
                    LibraryEntry.__table__.c.id
                )
            )
        ).scalar_one_or_none() is not None
        entry = await self.library_entry(audiobook_id)
        assert entry is not None  # noqa: S101 - inserted or already there
        if shelf is not None and entry.shelf != shelf:
            entry.shelf = shelf
            await self.session.flush()
        return entry, created

    async def remove_from_library(self, audiobook_id: int) -> None:
        entry = await self.library_entry(audiobook_id)
        if entry is not None:
            await self.session.delete(entry)

    async def set_favorite(self, audiobook_id: int, favorite: bool) -> LibraryEntry:
        entry, _ = await self.add_to_library(audiobook_id, None)
        entry.is_favorite = favorite
        entry.favorited_at = utcnow() if favorite else None
        await self.session.flush()
        return entry

    async def library_page(
        self, *, shelf: str | None, favorites_only: bool, limit: int, offset: int
    ) -> tuple[Sequence[LibraryEntry], int]:
        conditions = [LibraryEntry.user_id == self.user.id]
        if shelf is not None:
            conditions.append(LibraryEntry.shelf == shelf)
        if favorites_only:
            conditions.append(LibraryEntry.is_favorite.is_(True))
        ordering = (
            (LibraryEntry.favorited_at.desc(), LibraryEntry.id.desc())
            if favorites_only
            else (LibraryEntry.created_at.desc(), LibraryEntry.id.desc())
        )
        total = await self.session.scalar(select(func.count()).select_from(LibraryEntry).where(*conditions)) or 0
        rows = await self.session.scalars(
            select(LibraryEntry).where(*conditions).order_by(*ordering).limit(limit).offset(offset)
        )
        return rows.all(), total

    async def listening_page(
        self, *, completed: bool | None, limit: int, offset: int
    ) -> tuple[Sequence[ListeningProgress], int]:
        conditions = [ListeningProgress.user_id == self.user.id]
        if completed is not None:
            conditions.append(ListeningProgress.is_completed.is_(completed))
        total = await self.session.scalar(select(func.count()).select_from(ListeningProgress).where(*conditions)) or 0
        rows = await self.session.scalars(
            select(ListeningProgress)
            .where(*conditions)
            .order_by(ListeningProgress.last_listened_at.desc(), ListeningProgress.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return rows.all(), total

    async def books_with_progress(
        self, audiobook_ids: Sequence[int]
    ) -> tuple[dict[int, Audiobook], dict[int, ListeningProgress], dict[int, list[Chapter]]]:
        """The books, the caller's progress and the chapters for a page: a fixed number of queries."""
        if not audiobook_ids:
            return {}, {}, {}
        books = await books_by_id(self.session, audiobook_ids)
        progress = await self.session.scalars(
            select(ListeningProgress).where(
                ListeningProgress.user_id == self.user.id, ListeningProgress.audiobook_id.in_(audiobook_ids)
            )
        )
        chapters: dict[int, list[Chapter]] = {}
        for chapter in await self.session.scalars(
            select(Chapter).where(Chapter.audiobook_id.in_(audiobook_ids)).order_by(Chapter.chapter_number)
        ):
            chapters.setdefault(chapter.audiobook_id, []).append(chapter)
        return (
            books,
            {entry.audiobook_id: entry for entry in progress},
            chapters,
        )

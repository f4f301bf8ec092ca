"""Listening tables: progress per book, the listening-time ledger, bookmarks, library, play windows."""

from __future__ import annotations

from datetime import date, datetime

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Boolean, CheckConstraint, Date, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from audioverse.db import Base


def _user_fk() -> Mapped[int]:
    return mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))


def _book_fk() -> Mapped[int]:
    return mapped_column(ForeignKey("audiobook.id", ondelete="CASCADE"), index=True)


class ListeningProgress(Base):
    __tablename__ = "listening_progress"
    __table_args__ = (
        UniqueConstraint("user_id", "audiobook_id"),
        Index("ix_listening_progress_recent", "user_id", "last_listened_at"),
        CheckConstraint("position_seconds >= 0", name="position_positive"),
    )

    user_id: Mapped[int] = _user_fk()
    audiobook_id: Mapped[int] = _book_fk()
    position_seconds: Mapped[float] = mapped_column(Float)
    is_completed: Mapped[bool] = mapped_column(Boolean, default=False)
    playback_speed: Mapped[float] = mapped_column(Float)
    # As the device sent it: orders that device's own updates, whatever its clock says.
    client_updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    # When the update happened by the server's clock (never after its receipt): orders devices.
    effective_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    device_id: Mapped[str | None] = mapped_column(String(100), default=None)
    last_listened_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class ListeningLedger(Base):
    """Seconds listened per user, book and UTC day: the source of every listening statistic."""

    __tablename__ = "listening_ledger"
    __table_args__ = (UniqueConstraint("user_id", "audiobook_id", "day"),)

    user_id: Mapped[int] = _user_fk()
    audiobook_id: Mapped[int] = _book_fk()
    day: Mapped[date] = mapped_column(Date)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class Bookmark(Base):
    __tablename__ = "bookmark"
    __table_args__ = (Index("ix_bookmark_owner_book", "user_id", "audiobook_id", "position_seconds"),)

    user_id: Mapped[int] = _user_fk()
    audiobook_id: Mapped[int] = _book_fk()
    position_seconds: Mapped[float] = mapped_column(Float)
    title: Mapped[str] = mapped_column(String(200), default="")
    note: Mapped[str] = mapped_column(Text, default="")


class LibraryEntry(Base):
    __tablename__ = "library_entry"
    __table_args__ = (
        UniqueConstraint("user_id", "audiobook_id"),
        Index("ix_library_entry_recent", "user_id", "created_at"),
    )

    user_id: Mapped[int] = _user_fk()
    audiobook_id: Mapped[int] = _book_fk()
    shelf: Mapped[str | None] = mapped_column(String(60), default=None)
    is_favorite: Mapped[bool] = mapped_column(Boolean, default=False)
    favorited_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class LibraryRemoval(Base):
    """A book the listener took out of their library: a "not for me" that outlives the entry.

    Recommendations never suggest it again; the removal writes it in its own transaction.
    """

    __tablename__ = "library_removal"
    __table_args__ = (UniqueConstraint("user_id", "audiobook_id"),)

    user_id: Mapped[int] = _user_fk()
    audiobook_id: Mapped[int] = _book_fk()


class PlayWindow(Base):
    """When a user's play of a book last counted toward its play count (one per 30 minutes)."""

    __tablename__ = "play_window"
    __table_args__ = (UniqueConstraint("user_id", "audiobook_id"),)

    user_id: Mapped[int] = _user_fk()
    audiobook_id: Mapped[int] = _book_fk()
    counted_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))

"""Notification tables: what listeners follow, how they want to hear of it, and what was sent (once)."""

from __future__ import annotations

import enum

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from audioverse.db import Base, text_enum


class FollowKind(enum.StrEnum):
    AUTHOR = "author"
    NARRATOR = "narrator"
    SERIES = "series"
    GENRE = "genre"


class ReleaseAlerts(enum.StrEnum):
    INSTANT = "instant"
    DAILY = "daily"
    OFF = "off"


class Follow(Base):
    """One thing a listener follows explicitly: a person or genre by id, a series by its name (lowercased)."""

    __tablename__ = "follow"
    __table_args__ = (UniqueConstraint("user_id", "kind", "target"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    kind: Mapped[FollowKind] = mapped_column(text_enum(FollowKind))
    target: Mapped[str] = mapped_column(String(255))


class NotificationPreferences(Base):
    """A listener's choices; no row means the defaults (daily release alerts, the weekly digest on Mondays at 8)."""

    __tablename__ = "notification_preferences"
    __table_args__ = (
        CheckConstraint("digest_day >= 0 AND digest_day <= 6", name="digest_day_range"),
        CheckConstraint("digest_hour >= 0 AND digest_hour <= 23", name="digest_hour_range"),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), unique=True)
    new_releases: Mapped[ReleaseAlerts] = mapped_column(text_enum(ReleaseAlerts), default=ReleaseAlerts.DAILY)
    weekly_digest: Mapped[bool] = mapped_column(Boolean, default=True)
    digest_day: Mapped[int] = mapped_column(Integer, default=0)
    """0 is Monday, as Python's ``weekday()``."""
    digest_hour: Mapped[int] = mapped_column(Integer, default=8)
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")


class NotificationSent(Base):
    """One mail decided and sent: the unique key makes a second decision for the same period impossible."""

    __tablename__ = "notification_sent"
    __table_args__ = (UniqueConstraint("user_id", "kind", "period"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    period: Mapped[str] = mapped_column(String(64))
    """The release's book id, the local date of a daily summary, or the ISO week of a digest."""

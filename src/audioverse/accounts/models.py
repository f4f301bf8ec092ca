"""Account tables: users, refresh tokens (rotating families) and single-use email tokens."""

from __future__ import annotations

import enum
from datetime import datetime

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    column,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from audioverse.db import Base, text_enum

MIN_PLAYBACK_SPEED = 0.5
MAX_PLAYBACK_SPEED = 3.5


class Role(enum.StrEnum):
    LISTENER = "listener"
    CURATOR = "curator"
    ADMIN = "admin"


class EmailTokenPurpose(enum.StrEnum):
    VERIFY_EMAIL = "verify_email"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a purpose name, not a secret


class User(Base):
    __tablename__ = "user_account"
    __table_args__ = (
        # Usernames are unique regardless of case; emails are stored lower-cased.
        Index("uq_user_account_username_lower", func.lower(column("username")), unique=True),
        CheckConstraint(
            f"default_playback_speed BETWEEN {MIN_PLAYBACK_SPEED} AND {MAX_PLAYBACK_SPEED}",
            name="playback_speed",
        ),
    )

    email: Mapped[str] = mapped_column(String(320), unique=True)
    username: Mapped[str] = mapped_column(String(40))
    password_hash: Mapped[str] = mapped_column(String(255))
    profile_picture_key: Mapped[str | None] = mapped_column(String(500), default=None)
    bio: Mapped[str] = mapped_column(Text, default="")
    role: Mapped[Role] = mapped_column(
        text_enum(Role),
        default=Role.LISTENER,
    )
    is_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    default_playback_speed: Mapped[float] = mapped_column(Float, default=1.0)
    # Access tokens issued before this instant are refused (password reset, role change).
    credentials_changed_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))

    @property
    def is_curator(self) -> bool:
        return self.role in {Role.CURATOR, Role.ADMIN}

    @property
    def profile_picture_url(self) -> str | None:
        """Where the picture is served; the key changes with every upload, so the URL never serves a stale one."""
        if not self.profile_picture_key:
            return None
        version = self.profile_picture_key.rsplit("/", 1)[-1].split(".")[0]
        return f"/api/users/{self.id}/picture/?v={version}"


class RefreshToken(Base):
    __tablename__ = "refresh_token"
    __table_args__ = (Index("ix_refresh_token_family", "family_id"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[str] = mapped_column(String(36))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class EmailToken(Base):
    __tablename__ = "email_token"

    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[EmailTokenPurpose] = mapped_column(text_enum(EmailTokenPurpose, 32))
    email: Mapped[str] = mapped_column(String(320))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)

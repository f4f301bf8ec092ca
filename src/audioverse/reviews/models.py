"""Review tables: reviews with moderation fields, and helpful votes."""

from __future__ import annotations

import enum
from datetime import datetime

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from audioverse.accounts.models import User
from audioverse.db import Base, text_enum


class ReviewStatus(enum.StrEnum):
    VISIBLE = "visible"
    HIDDEN = "hidden"


class Review(Base):
    __tablename__ = "review"
    __table_args__ = (
        UniqueConstraint("user_id", "audiobook_id"),
        CheckConstraint("rating >= 1 AND rating <= 5", name="rating_range"),
        CheckConstraint("helpful_count >= 0", name="helpful_count_positive"),
        Index("ix_review_listing", "audiobook_id", "status", "helpful_count"),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    audiobook_id: Mapped[int] = mapped_column(ForeignKey("audiobook.id", ondelete="CASCADE"))
    rating: Mapped[int] = mapped_column(Integer)
    review_text: Mapped[str] = mapped_column(Text, default="")
    helpful_count: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[ReviewStatus] = mapped_column(
        text_enum(ReviewStatus),
        default=ReviewStatus.VISIBLE,
    )
    moderated_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    moderation_reason: Mapped[str | None] = mapped_column(String(1000), default=None)
    moderated_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)

    author: Mapped[User] = relationship(foreign_keys=[user_id], lazy="raise")

    @property
    def username(self) -> str:
        """The author's name, as every review is shown (the author must be loaded with the review)."""
        return self.author.username


class HelpfulVote(Base):
    __tablename__ = "helpful_vote"
    __table_args__ = (UniqueConstraint("user_id", "review_id"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    review_id: Mapped[int] = mapped_column(ForeignKey("review.id", ondelete="CASCADE"), index=True)

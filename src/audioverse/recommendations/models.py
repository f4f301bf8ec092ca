"""Recommendation tables: the books a listener removed from their library, never suggested again."""

from __future__ import annotations

from sqlalchemy import ForeignKey, UniqueConstraint, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, UOWTransaction, mapped_column

from audioverse.db import Base
from audioverse.listening.models import LibraryEntry


class RecommendationDismissal(Base):
    """A book the listener took out of their library: a "not for me" that outlives the entry."""

    __tablename__ = "recommendation_dismissal"
    __table_args__ = (UniqueConstraint("user_id", "audiobook_id"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    audiobook_id: Mapped[int] = mapped_column(ForeignKey("audiobook.id", ondelete="CASCADE"))


@event.listens_for(Session, "after_flush")
def record_library_removals(session: Session, flush_context: UOWTransaction) -> None:
    """In the removal's own flush, so the dismissal exists exactly when the removal commits."""
    removed = [
        {"user_id": entry.user_id, "audiobook_id": entry.audiobook_id}
        for entry in session.deleted
        if isinstance(entry, LibraryEntry)
    ]
    if removed:
        connection = session.connection()
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        statement = insert(RecommendationDismissal).on_conflict_do_nothing(index_elements=["user_id", "audiobook_id"])
        connection.execute(statement, removed)

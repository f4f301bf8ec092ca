"""Catalog tables: audiobooks with their people, genres and chapters, the search outbox and search tuning."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import get_args

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    column,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, query_expression, relationship

from audioverse.db import Base, text_enum
from search.query import SortField

# Storage keys under this prefix hold recordings that large demo catalogs share between books:
# deleting one book leaves them for the others.
SHARED_AUDIO_PREFIX = "demo/shared/"
PERSON_NAME_MAX_LENGTH = 255
GENRE_NAME_MAX_LENGTH = 100

audiobook_author = Table(
    "audiobook_author",
    Base.metadata,
    Column("audiobook_id", ForeignKey("audiobook.id", ondelete="CASCADE"), primary_key=True),
    Column("author_id", ForeignKey("author.id", ondelete="CASCADE"), primary_key=True, index=True),
)
audiobook_narrator = Table(
    "audiobook_narrator",
    Base.metadata,
    Column("audiobook_id", ForeignKey("audiobook.id", ondelete="CASCADE"), primary_key=True),
    Column("narrator_id", ForeignKey("narrator.id", ondelete="CASCADE"), primary_key=True, index=True),
)
audiobook_genre = Table(
    "audiobook_genre",
    Base.metadata,
    Column("audiobook_id", ForeignKey("audiobook.id", ondelete="CASCADE"), primary_key=True),
    Column("genre_id", ForeignKey("genre.id", ondelete="CASCADE"), primary_key=True),
    # A genre's books read from the index alone: its shelf count and the probe of a sorted walk.
    Index("ix_audiobook_genre_genre_id_audiobook_id", "genre_id", "audiobook_id"),
)


class Author(Base):
    __tablename__ = "author"
    __table_args__ = (Index("uq_author_name_lower", func.lower(column("name")), unique=True),)

    name: Mapped[str] = mapped_column(String(PERSON_NAME_MAX_LENGTH))
    bio: Mapped[str] = mapped_column(Text, default="")
    photo_url: Mapped[str | None] = mapped_column(String(1000), default=None)
    website: Mapped[str | None] = mapped_column(String(1000), default=None)
    audiobooks: Mapped[list[Audiobook]] = relationship(
        secondary=audiobook_author, back_populates="authors", lazy="raise", viewonly=True
    )
    audiobooks_count: Mapped[int] = query_expression()
    """Set only by a query that asks for it (the catalog services' ``with_expression``), else None."""


class Narrator(Base):
    __tablename__ = "narrator"
    __table_args__ = (Index("uq_narrator_name_lower", func.lower(column("name")), unique=True),)

    name: Mapped[str] = mapped_column(String(PERSON_NAME_MAX_LENGTH))
    bio: Mapped[str] = mapped_column(Text, default="")
    photo_url: Mapped[str | None] = mapped_column(String(1000), default=None)
    website: Mapped[str | None] = mapped_column(String(1000), default=None)
    audiobooks: Mapped[list[Audiobook]] = relationship(
        secondary=audiobook_narrator, back_populates="narrators", lazy="raise", viewonly=True
    )
    audiobooks_count: Mapped[int] = query_expression()  # as on Author


class Genre(Base):
    __tablename__ = "genre"

    name: Mapped[str] = mapped_column(String(GENRE_NAME_MAX_LENGTH), unique=True)
    slug: Mapped[str] = mapped_column(String(GENRE_NAME_MAX_LENGTH), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    audiobooks_count: Mapped[int] = query_expression()  # as on Author


class Audiobook(Base):
    __tablename__ = "audiobook"
    __table_args__ = (
        CheckConstraint("duration_seconds >= 0", name="duration_positive"),
        CheckConstraint("average_rating >= 0 AND average_rating <= 5", name="rating_range"),
        Index("ix_audiobook_title_lower", func.lower(column("title"))),
    )

    title: Mapped[str] = mapped_column(String(500))
    subtitle: Mapped[str | None] = mapped_column(String(500), default=None)
    description: Mapped[str] = mapped_column(Text, default="")
    duration_seconds: Mapped[float] = mapped_column(Float)
    release_date: Mapped[date | None] = mapped_column(Date, default=None)
    language: Mapped[str] = mapped_column(String(35), index=True)
    publisher: Mapped[str | None] = mapped_column(String(255), default=None)
    isbn: Mapped[str | None] = mapped_column(String(13), unique=True, default=None)
    series: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    series_position: Mapped[float | None] = mapped_column(Float, default=None)
    format: Mapped[str] = mapped_column(String(10))
    mime_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    bitrate: Mapped[int] = mapped_column(Integer, default=0)
    audio_key: Mapped[str] = mapped_column(String(500))
    cover_key: Mapped[str | None] = mapped_column(String(500), default=None)
    average_rating: Mapped[Decimal] = mapped_column(Numeric(3, 2), default=Decimal("0.00"))
    total_ratings: Mapped[int] = mapped_column(Integer, default=0)
    total_reviews: Mapped[int] = mapped_column(Integer, default=0)
    play_count: Mapped[int] = mapped_column(Integer, default=0)
    uploaded_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None, index=True
    )

    authors: Mapped[list[Author]] = relationship(secondary=audiobook_author, lazy="raise")
    narrators: Mapped[list[Narrator]] = relationship(secondary=audiobook_narrator, lazy="raise")
    genres: Mapped[list[Genre]] = relationship(secondary=audiobook_genre, lazy="raise")
    chapters: Mapped[list[Chapter]] = relationship(
        back_populates="audiobook",
        order_by="Chapter.chapter_number",
        cascade="all, delete-orphan",
        lazy="raise",
        passive_deletes=True,
    )

    @property
    def cover_url(self) -> str | None:
        return cover_url(self.id, self.cover_key)


def cover_url(audiobook_id: int, cover_key: str | None) -> str | None:
    """Where clients fetch a book's cover; the key's random directory versions it, so caches may keep it forever."""
    if not cover_key:
        return None
    version = cover_key.rsplit("/", 2)[-2][:8]
    return f"/api/audiobooks/{audiobook_id}/cover/?v={version}"


# Each sort of the list walks one of these, forwards or backwards, with the id that breaks ties: a page
# of a large genre reads the rows it shows instead of sorting every book in the genre.
for _sorted_by in get_args(SortField):
    Index(f"ix_audiobook_{_sorted_by}_id", Audiobook.__table__.c[_sorted_by], Audiobook.__table__.c.id)


class Chapter(Base):
    __tablename__ = "chapter"
    __table_args__ = (
        UniqueConstraint("audiobook_id", "chapter_number"),
        CheckConstraint("end_time_seconds >= start_time_seconds", name="ordered_times"),
    )

    audiobook_id: Mapped[int] = mapped_column(ForeignKey("audiobook.id", ondelete="CASCADE"))
    chapter_number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(255))
    start_time_seconds: Mapped[float] = mapped_column(Float)
    end_time_seconds: Mapped[float] = mapped_column(Float)
    audiobook: Mapped[Audiobook] = relationship(back_populates="chapters", lazy="raise")


class OutboxEntity(enum.StrEnum):
    AUDIOBOOK = "audiobook"
    AUTHOR = "author"
    NARRATOR = "narrator"
    # The curated synonym sets changed (entity id 0): every search node applies the saved ones.
    SYNONYMS = "synonyms"


class OutboxOperation(enum.StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"
    # A person gained or lost a book: their own document (its book count) changes, their books' do not.
    RECOUNT = "recount"


class CatalogOutbox(Base):
    """One catalog change the search index has yet to take in; written in the change's transaction."""

    __tablename__ = "catalog_outbox"
    __table_args__ = (Index("ix_catalog_outbox_pending", "processed_at", "id"),)

    entity: Mapped[OutboxEntity] = mapped_column(text_enum(OutboxEntity))
    entity_id: Mapped[int] = mapped_column(BigInteger)
    operation: Mapped[OutboxOperation] = mapped_column(text_enum(OutboxOperation))
    processed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


SEARCH_NODE_NAME_MAX_LENGTH = 255
search_node_applied = Table(
    "search_node_applied",
    Base.metadata,
    Column("outbox_id", ForeignKey("catalog_outbox.id", ondelete="CASCADE"), primary_key=True),
    Column("node", String(SEARCH_NODE_NAME_MAX_LENGTH), primary_key=True),
)
"""With several search nodes, each node's own cursor: the outbox rows it has taken in. A row every node
has taken in is marked processed and its entries here go."""

SEARCH_REPORT_QUERY_MAX_LENGTH = 200


class SearchSynonyms(Base):
    """The synonym sets both engines apply, as a curator last saved them; no row means the shipped defaults."""

    __tablename__ = "search_synonyms"

    sets: Mapped[list[list[str]]] = mapped_column(JSON)


class ZeroResultQuery(Base):
    """A search text (normalized, with no user attached) that found nothing, and how many times it did."""

    __tablename__ = "search_zero_result"

    query: Mapped[str] = mapped_column(String(SEARCH_REPORT_QUERY_MAX_LENGTH), unique=True)
    searches: Mapped[int] = mapped_column(BigInteger)

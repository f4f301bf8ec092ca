"""The documents the engines index: one per audiobook, one per author or narrator for suggestions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import msgspec

PersonKind = Literal["author", "narrator"]


class PersonRef(msgspec.Struct, frozen=True):
    """An author or narrator as named on an audiobook."""

    id: int
    name: str


class GenreRef(msgspec.Struct, frozen=True):
    """A genre an audiobook belongs to; filters and facets use the slug."""

    id: int
    name: str
    slug: str


class AudiobookDocument(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the engines need to find, filter, sort and highlight one audiobook.

    The service maps its catalog rows to this shape; the engines only ever see documents.
    ``created_at`` without a timezone is taken as UTC.
    """

    id: int
    title: str
    subtitle: str = ""
    description: str = ""
    series: str | None = None
    series_position: float | None = None
    authors: list[PersonRef] = msgspec.field(default_factory=list)
    narrators: list[PersonRef] = msgspec.field(default_factory=list)
    genres: list[GenreRef] = msgspec.field(default_factory=list)
    language: str
    duration_seconds: float
    release_date: date | None = None
    average_rating: float = 0.0
    total_ratings: int = 0
    play_count: int = 0
    created_at: datetime
    cover_url: str | None = None
    listing: dict[str, Any] | None = None
    """What a hit shows of the book (the service's list form, as JSON builtins), stored and handed back
    with each hit as it is: never searched, filtered or sorted. A page answered from it reads nothing else."""

    @property
    def release_day(self) -> int | None:
        """The release date as a day number, the form range filters and sorting compare."""
        return None if self.release_date is None else self.release_date.toordinal()

    @property
    def created_at_microseconds(self) -> int:
        """Microseconds since the Unix epoch: an exact integer to sort on."""
        moment = self.created_at if self.created_at.tzinfo else self.created_at.replace(tzinfo=UTC)
        return (moment - EPOCH) // ONE_MICROSECOND


class PersonDocument(msgspec.Struct, frozen=True, kw_only=True):
    """An author or narrator, indexed for as-you-type suggestions."""

    id: int
    name: str
    kind: PersonKind
    audiobooks_count: int = 0

    @property
    def key(self) -> str:
        """Unique across kinds, since an author and a narrator may share a numeric id."""
        return person_key(self.kind, self.id)


def person_key(kind: PersonKind, person_id: int) -> str:
    return f"{kind}-{int(person_id)}"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)

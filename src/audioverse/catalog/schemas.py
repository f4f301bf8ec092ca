"""Wire shapes of the catalog API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import msgspec

from audioverse.accounts.schemas import SPACE_OR_CONTROL, Bio
from audioverse.catalog.models import GENRE_NAME_MAX_LENGTH, PERSON_NAME_MAX_LENGTH, SEARCH_REPORT_QUERY_MAX_LENGTH
from audioverse.types import Text
from search.query import Highlights

Name = Annotated[Text, msgspec.Meta(min_length=1, max_length=PERSON_NAME_MAX_LENGTH)]
GenreName = Annotated[Text, msgspec.Meta(min_length=1, max_length=GENRE_NAME_MAX_LENGTH)]
# A type with its own pattern cannot layer Text's (msgspec takes one pattern); SPACE_OR_CONTROL holds NUL.
Url = Annotated[str, msgspec.Meta(max_length=1000, pattern=rf"^https?://[^{SPACE_OR_CONTROL}]+$")]
Language = Annotated[str, msgspec.Meta(min_length=2, max_length=35, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]
Isbn = Annotated[
    str, msgspec.Meta(pattern=r"^([0-9]{9}[0-9Xx]|[0-9]{13})$", description="ISBN-10 or ISBN-13, digits only")
]
Seconds = Annotated[float, msgspec.Meta(ge=0)]


class PersonRef(msgspec.Struct):
    id: int
    name: str


class GenreRef(msgspec.Struct):
    id: int
    name: str
    slug: str


class ChapterRead(msgspec.Struct):
    chapter_number: int
    title: str
    start_time_seconds: float
    end_time_seconds: float


class AudiobookRead(msgspec.Struct):
    """The list form of an audiobook."""

    id: int
    title: str
    subtitle: str | None
    description: str
    cover_url: str | None
    duration_seconds: float
    release_date: date | None
    language: str
    publisher: str | None
    isbn: str | None
    series: str | None
    series_position: float | None
    authors: list[PersonRef]
    narrators: list[PersonRef]
    genres: list[GenreRef]
    average_rating: float
    total_ratings: int
    total_reviews: int
    play_count: int
    format: str
    mime_type: str
    size_bytes: int
    bitrate: int
    # Named as the model names it, so the book converts to this by attribute; the wire name is unchanged.
    uploaded_by_id: int | None = msgspec.field(name="uploaded_by")
    created_at: datetime
    updated_at: datetime


class AudiobookDetail(AudiobookRead):
    chapters: list[ChapterRead]


class AudiobookUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """PUT/PATCH body: any subset of the metadata fields; people and genres by name."""

    title: Annotated[Text, msgspec.Meta(min_length=1, max_length=500)] | msgspec.UnsetType = msgspec.UNSET
    subtitle: Annotated[Text, msgspec.Meta(max_length=500)] | msgspec.UnsetType | None = msgspec.UNSET
    description: Annotated[Text, msgspec.Meta(max_length=20000)] | msgspec.UnsetType = msgspec.UNSET
    authors: Annotated[list[Name], msgspec.Meta(min_length=1, max_length=20)] | msgspec.UnsetType = msgspec.UNSET
    narrators: Annotated[list[Name], msgspec.Meta(max_length=20)] | msgspec.UnsetType = msgspec.UNSET
    genres: Annotated[list[GenreName], msgspec.Meta(max_length=10)] | msgspec.UnsetType = msgspec.UNSET
    language: Language | msgspec.UnsetType = msgspec.UNSET
    release_date: date | msgspec.UnsetType | None = msgspec.UNSET
    publisher: Annotated[Text, msgspec.Meta(max_length=255)] | msgspec.UnsetType | None = msgspec.UNSET
    isbn: Isbn | msgspec.UnsetType | None = msgspec.UNSET
    series: Annotated[Text, msgspec.Meta(max_length=255)] | msgspec.UnsetType | None = msgspec.UNSET
    series_position: Annotated[float, msgspec.Meta(ge=0)] | msgspec.UnsetType | None = msgspec.UNSET


class ChapterWrite(msgspec.Struct, forbid_unknown_fields=True):
    title: Name
    start_time_seconds: Seconds
    end_time_seconds: Seconds


class PersonRead(msgspec.Struct):
    id: int
    name: str
    bio: str
    photo_url: str | None
    website: str | None
    audiobooks_count: int


class PersonDetail(PersonRead):
    audiobooks: list[AudiobookRead]


class PersonUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    bio: Bio | msgspec.UnsetType = msgspec.UNSET
    photo_url: Url | msgspec.UnsetType | None = msgspec.UNSET
    website: Url | msgspec.UnsetType | None = msgspec.UNSET


class GenreRead(msgspec.Struct):
    id: int
    name: str
    slug: str
    description: str
    audiobooks_count: int


class SearchItem(AudiobookRead):
    highlights: Highlights


class SearchPage(msgspec.Struct):
    """A search's page: a list page plus the engine's facet counts and timing."""

    items: list[SearchItem]
    total: int
    limit: int
    offset: int
    facets: dict[str, dict[str, int]]
    processing_time_ms: int


class ReindexJob(msgspec.Struct):
    job_id: str


class ReindexProgress(msgspec.Struct):
    state: str
    processed: int
    total: int
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None = None


class SearchNodeStatus(msgspec.Struct):
    """One node of several (``AUDIOVERSE_MEILISEARCH_URLS``), each fed from the outbox on its own."""

    node: str
    """The node's URL."""
    reachable: bool
    """Whether it answered a search just now; searches go to the other nodes while it does not."""
    pending_changes: int
    """Catalog changes it has yet to take in: it catches up from them when it is back."""


class SearchStatus(msgspec.Struct):
    engine: str
    index: str
    documents_in_index: int
    documents_in_database: int
    pending_changes: int
    sync_lag_seconds: float
    """How long the oldest change not yet in the index has waited (0 when none waits)."""
    last_synced_at: datetime | None
    reindex: ReindexProgress
    nodes: list[SearchNodeStatus] = msgspec.field(default_factory=list)
    """With several search nodes, each one's state; empty with one engine."""


MAX_SYNONYM_SETS = 2000
MAX_TERMS_PER_SYNONYM_SET = 20
SYNONYM_TERM_MAX_LENGTH = 50
SynonymTerm = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=SYNONYM_TERM_MAX_LENGTH,
        # Something besides spaces (``\S`` alone would take a NUL), and no control character anywhere.
        pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$",
        description="A word or a few words, without control characters; stored lowercased with single spaces.",
    ),
]
SynonymSet = Annotated[
    list[SynonymTerm],
    msgspec.Meta(
        min_length=2,
        max_length=MAX_TERMS_PER_SYNONYM_SET,
        description="Terms that stand for one another in searches (mutual synonyms).",
    ),
]


class SynonymSetsWrite(msgspec.Struct, forbid_unknown_fields=True):
    """The whole list of synonym sets, replacing the current one."""

    sets: Annotated[list[SynonymSet], msgspec.Meta(max_length=MAX_SYNONYM_SETS)]


class SynonymSetsRead(msgspec.Struct):
    sets: list[list[str]]
    """Each set's terms, lowercased, in the order they were given."""
    is_default: bool
    """True until a curator saves a list: these are the sets the service ships with."""
    updated_at: datetime | None
    """When a curator last saved the list; null for the shipped defaults."""


class ZeroResultRead(msgspec.Struct):
    query: Annotated[str, msgspec.Meta(max_length=SEARCH_REPORT_QUERY_MAX_LENGTH)]
    """The search text as counted: lowercased, spaces collapsed."""
    searches: int
    """How many searches for it found nothing."""
    first_seen_at: datetime
    last_seen_at: datetime

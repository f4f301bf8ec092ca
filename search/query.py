"""The engine-neutral query model: text, typed filters, sort, facets, page; and what a search returns."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import date
from typing import Any, Literal, NamedTuple, get_args

import msgspec

FieldOrder = Literal[
    "title",
    "-title",
    "release_date",
    "-release_date",
    "duration_seconds",
    "-duration_seconds",
    "average_rating",
    "-average_rating",
    "play_count",
    "-play_count",
    "created_at",
    "-created_at",
]
"""An order by one field, ``-`` for descending: what a plain list offers."""
SortOption = Literal["relevance", FieldOrder]
SortField = Literal["title", "release_date", "duration_seconds", "average_rating", "play_count", "created_at"]
FacetName = Literal["genres", "languages", "authors", "narrators", "duration"]

SORT_OPTIONS: frozenset[str] = frozenset(get_args(SortOption))
FACET_NAMES: frozenset[str] = frozenset(get_args(FacetName))
MAX_PAGE_SIZE = 100
# Engines collect offset + limit hits before they drop the offset, so a page must end within this
# many matches; deeper pages are refused (narrow the query instead) and totals stay exact.
MAX_RESULT_WINDOW = 10_000
MAX_SUGGESTIONS = 20

# Both engines allow the same typos, so a query finds the same books whichever profile runs:
# no typo below 5 letters (short words would match too much), one from 5, two from 9.
ONE_TYPO_MIN_LENGTH = 5
TWO_TYPOS_MIN_LENGTH = 9

# Facets list the most frequent values first; a facet with more values is cut at this many.
MAX_FACET_VALUES = 100


class DurationBucket(NamedTuple):
    """A duration facet value: books lasting at least ``min_seconds`` and less than ``max_seconds``."""

    label: str
    min_seconds: float | None
    max_seconds: float | None


HOUR = 3600.0
DURATION_BUCKETS: tuple[DurationBucket, ...] = (
    DurationBucket("<1h", None, 1 * HOUR),
    DurationBucket("1-3h", 1 * HOUR, 3 * HOUR),
    DurationBucket("3-6h", 3 * HOUR, 6 * HOUR),
    DurationBucket("6-10h", 6 * HOUR, 10 * HOUR),
    DurationBucket("10-20h", 10 * HOUR, 20 * HOUR),
    DurationBucket(">20h", 20 * HOUR, None),
)


def duration_bucket(seconds: float) -> str:
    """The label of the duration bucket holding ``seconds``; each bucket includes its lower bound."""
    for bucket in DURATION_BUCKETS:
        if bucket.max_seconds is None or seconds < bucket.max_seconds:
            return bucket.label
    raise ValueError(f"no duration bucket holds {seconds!r} seconds")


def typo_budget(word: str) -> int:
    """How many typos (Levenshtein edits, a swap of neighbours counting as one) ``word`` may carry."""
    if len(word) >= TWO_TYPOS_MIN_LENGTH:
        return 2
    if len(word) >= ONE_TYPO_MIN_LENGTH:
        return 1
    return 0


WORD = re.compile(r"\w+")


def title_words(title: str) -> int:
    """How many words a title has: among equal matches, fewer means closer to what was typed."""
    return len(WORD.findall(title))


def synonym_map(sets: Sequence[Sequence[str]]) -> dict[str, list[str]]:
    """Each term of the sets mapped to every other term sharing a set with it (sets are mutual)."""
    mapping: dict[str, list[str]] = {}
    for terms in sets:
        for term in terms:
            others = mapping.setdefault(term, [])
            others += [other for other in terms if other != term and other not in others]
    return {term: others for term, others in mapping.items() if others}


def parse_sort(sort: SortOption) -> tuple[SortField, bool] | None:
    """``"-title"`` → ``("title", True)`` (descending); ``None`` for relevance."""
    if sort == "relevance":
        return None
    descending = sort.startswith("-")
    field: SortField = sort.removeprefix("-")  # type: ignore[assignment]
    return field, descending


class SearchFilters(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Typed filter values; every bound is inclusive and ``None`` means "any"."""

    genre: str | None = None
    """A genre slug."""
    author_id: int | None = None
    narrator_id: int | None = None
    language: str | None = None
    duration_min: float | None = None
    """Seconds."""
    duration_max: float | None = None
    released_after: date | None = None
    """Books released on or after this day; books without a release date never match a date bound."""
    released_before: date | None = None
    min_rating: float | None = None

    def __post_init__(self) -> None:
        for bound in (self.duration_min, self.duration_max, self.min_rating):
            if bound is not None and not math.isfinite(bound):
                raise ValueError("numeric filter bounds must be finite numbers")


class SearchQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One search: empty ``text`` browses the catalog with the filters, sort and facets."""

    text: str = ""
    filters: SearchFilters = msgspec.field(default_factory=SearchFilters)
    sort: SortOption = "relevance"
    facets: frozenset[FacetName] = frozenset()
    limit: int = 20
    offset: int = 0

    def __post_init__(self) -> None:
        if self.sort not in SORT_OPTIONS:
            raise ValueError(f"unknown sort {self.sort!r}; expected one of {sorted(SORT_OPTIONS)}")
        if not self.facets <= FACET_NAMES:
            raise ValueError(f"unknown facets {sorted(self.facets - FACET_NAMES)}; expected {sorted(FACET_NAMES)}")
        if not 1 <= self.limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        if self.offset < 0:
            raise ValueError("offset must not be negative")
        result_window(self)


def result_window(query: SearchQuery) -> int:
    """How many ranked hits an engine must collect for ``query``'s page: ``offset + limit``.

    Engines size what they collect by this, so they ask here rather than add it up themselves:
    a query changed after validation (``msgspec.structs.force_setattr``) still cannot ask for more.
    """
    window = query.offset + query.limit
    if window > MAX_RESULT_WINDOW:
        raise ValueError(f"offset + limit must not exceed {MAX_RESULT_WINDOW}")
    return window


class Highlights(msgspec.Struct, frozen=True):
    """HTML-escaped text with the matched words wrapped in ``<mark>``…``</mark>``.

    ``description`` is cropped to about thirty words around the first match, with ``…`` where text was cut.
    """

    title: str
    authors: list[str]
    narrators: list[str]
    description: str


class SearchHit(msgspec.Struct, frozen=True):
    """A matching audiobook: its id, its highlights, and the ``listing`` its document was given (None if none)."""

    id: int
    highlights: Highlights
    listing: dict[str, Any] | None = None


class SearchResult(msgspec.Struct, frozen=True):
    """A page of hits, the exact number of matches, and facet counts over all matches.

    ``facets`` maps each requested facet to ``{value: count}``, values without matches left out:
    genre slugs, language codes, author and narrator ids (as strings) and duration bucket labels.
    """

    hits: list[SearchHit]
    total: int
    facets: dict[str, dict[str, int]]
    processing_time_ms: int


class AudiobookSuggestion(msgspec.Struct, frozen=True):
    id: int
    title: str


class PersonSuggestion(msgspec.Struct, frozen=True):
    id: int
    name: str


class Suggestions(msgspec.Struct, frozen=True):
    """As-you-type suggestions for a search box, best first."""

    audiobooks: list[AudiobookSuggestion]
    authors: list[PersonSuggestion]
    narrators: list[PersonSuggestion]


NO_SUGGESTIONS = Suggestions(audiobooks=[], authors=[], narrators=[])

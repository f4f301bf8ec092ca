"""The search engine port that the Meilisearch and embedded adapters implement, and its errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from search.documents import AudiobookDocument, PersonDocument, PersonKind
from search.query import SearchQuery, SearchResult, Suggestions


class SearchEngineError(Exception):
    """The engine refused or failed an operation; a write that raised was not applied."""


class SearchEngineUnavailable(SearchEngineError):
    """The engine could not be reached; retrying later may succeed."""


class SearchEngineAccessDenied(SearchEngineUnavailable):
    """The engine refused our credentials (missing or wrong key); it stays so until the configuration is fixed."""


class SearchEngine(Protocol):
    """What the service needs from a search engine.

    Every write returns only once the engine has applied it (searches see it), and raises otherwise.

    Reindexing keeps searches answering: ``create_staging_index`` starts an empty index beside the
    live one, ``load_staging`` fills it in batches, ``swap_in_staging`` makes it live in one atomic
    step and discards the old one; ``drop_staging`` abandons a rebuild. While a staging index exists,
    ``upsert``/``delete`` (and their people variants) write to both, so changes made during a rebuild
    are not lost by the swap.
    """

    name: str

    async def configure(self) -> None:
        """Create the indexes if needed and apply the settings kept in code; safe to call repeatedly."""
        ...

    async def upsert(self, documents: Sequence[AudiobookDocument]) -> None:
        """Add audiobooks, replacing whole any document with the same id."""
        ...

    async def delete(self, ids: Sequence[int]) -> None:
        """Remove audiobooks by id; unknown ids are ignored."""
        ...

    async def upsert_people(self, people: Sequence[PersonDocument]) -> None:
        """Add or replace authors and narrators for suggestions."""
        ...

    async def delete_people(self, kind: PersonKind, ids: Sequence[int]) -> None:
        """Remove authors or narrators by id; unknown ids are ignored."""
        ...

    async def search(self, query: SearchQuery) -> SearchResult:
        """Ranked, filtered, sorted and faceted search over the live index."""
        ...

    async def suggest(self, text: str, limit: int = 5) -> Suggestions:
        """Up to ``limit`` audiobooks, authors and narrators whose words start like ``text`` (typos allowed)."""
        ...

    async def set_synonyms(self, sets: Sequence[Sequence[str]]) -> None:
        """Replace the synonym sets searches apply (each set's terms stand for one another); no reindex."""
        ...

    async def count(self) -> int:
        """Audiobooks in the live index."""
        ...

    async def create_staging_index(self) -> None:
        """Start an empty staging index with the live settings, replacing any earlier one."""
        ...

    async def load_staging(
        self, documents: Sequence[AudiobookDocument] = (), people: Sequence[PersonDocument] = ()
    ) -> None:
        """Add a batch to the staging index; searches do not see it until the swap."""
        ...

    async def swap_in_staging(self) -> None:
        """Atomically make the staging index live and drop the old live index."""
        ...

    async def drop_staging(self) -> None:
        """Abandon the staging index, if any; the live index is untouched."""
        ...

    async def health(self) -> None:
        """Raise ``SearchEngineUnavailable`` (its message says why) if the live index cannot answer searches."""
        ...

    async def close(self) -> None:
        """Release connections, writers and threads."""
        ...

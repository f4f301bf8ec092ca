"""The search engine port that the Meilisearch and embedded adapters implement."""

from __future__ import annotations

from typing import Protocol


class SearchEngine(Protocol):
    """What the service needs from a search engine; the adapters arrive with the search issue."""

    name: str

    async def health(self) -> None:
        """Raise if the engine cannot answer (readiness probe)."""
        ...

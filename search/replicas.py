"""Several search engine nodes as one: searches go to a healthy node and fail over, rebuilds write to all.

Open-source Meilisearch has no replication, so each node is fed on its own: the catalog outbox drains
into every node with a cursor per node (``audioverse.catalog.indexing``), and a node that was down
catches up from its own cursor. This class only spreads reads and fans out the writes that are not
fed by the outbox (settings, synonyms and the whole-index rebuild).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import structlog

from search.documents import AudiobookDocument, PersonDocument, PersonKind
from search.engine import SearchEngine, SearchEngineError, SearchEngineUnavailable
from search.query import SearchQuery, SearchResult, Suggestions

Result = TypeVar("Result")

# How long a node that failed is tried only after the healthy ones: long enough that a dead node costs
# searches no failed attempt per request, short enough that a restarted one takes traffic again soon.
RETRY_AFTER_SECONDS = 5.0


@dataclass
class SearchNode:
    """One engine of the set, named by what identifies it to operators (its URL): its cursor's key."""

    name: str
    engine: SearchEngine
    failed_at: float | None = None
    prepared: bool = False
    """Whether this process has applied the settings and synonyms to it since it last failed: a node that
    was down when the service started, or lost its data, gets them before its first drained change."""


class ReplicatedSearchEngine:
    """The ``SearchEngine`` port over several nodes holding the same index.

    Reads (search, suggest, count, health) go round-robin to nodes that have not failed lately, and move
    on to the next node when one is unreachable, so a node dying loses no search. Settings and synonyms
    go to every reachable node (a node that misses synonyms gets them from the outbox). The rebuild's
    writes (``upsert``, staging, swap) must reach every node, or the rebuild fails and can be retried.
    """

    def __init__(
        self,
        nodes: Sequence[tuple[str, SearchEngine]],
        *,
        retry_after_seconds: float = RETRY_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not nodes:
            raise ValueError("a replicated search engine needs at least one node")
        self.nodes = [SearchNode(name, engine) for name, engine in nodes]
        self.name = self.nodes[0].engine.name
        self._retry_after = retry_after_seconds
        self._clock = clock
        self._turns = itertools.cycle(range(len(self.nodes)))
        self._log = structlog.get_logger(__name__)

    async def configure(self) -> None:
        await self._each_reachable(lambda engine: engine.configure())

    async def set_synonyms(self, sets: Sequence[Sequence[str]]) -> None:
        await self._each_reachable(lambda engine: engine.set_synonyms(sets))

    async def upsert(self, documents: Sequence[AudiobookDocument]) -> None:
        await self._every(lambda engine: engine.upsert(documents))

    async def delete(self, ids: Sequence[int]) -> None:
        await self._every(lambda engine: engine.delete(ids))

    async def upsert_people(self, people: Sequence[PersonDocument]) -> None:
        await self._every(lambda engine: engine.upsert_people(people))

    async def delete_people(self, kind: PersonKind, ids: Sequence[int]) -> None:
        await self._every(lambda engine: engine.delete_people(kind, ids))

    async def search(self, query: SearchQuery) -> SearchResult:
        return await self._read(lambda engine: engine.search(query))

    async def suggest(self, text: str, limit: int = 5) -> Suggestions:
        return await self._read(lambda engine: engine.suggest(text, limit))

    async def count(self) -> int:
        return await self._read(lambda engine: engine.count())

    async def health(self) -> None:
        # Ready while any node answers: the others are failed over and catch up when back.
        await self._read(lambda engine: engine.health())

    async def create_staging_index(self) -> None:
        await self._every(lambda engine: engine.create_staging_index())

    async def load_staging(
        self, documents: Sequence[AudiobookDocument] = (), people: Sequence[PersonDocument] = ()
    ) -> None:
        await self._every(lambda engine: engine.load_staging(documents, people))

    async def swap_in_staging(self) -> None:
        await self._every(lambda engine: engine.swap_in_staging())

    async def drop_staging(self) -> None:
        await self._each_reachable(lambda engine: engine.drop_staging())

    async def close(self) -> None:
        for node in self.nodes:
            await node.engine.close()

    def failed(self, node: SearchNode) -> None:
        """Try ``node`` only after the healthy ones for a while (its drain or a read found it unreachable)."""
        if node.failed_at is None:
            self._log.warning("search node unreachable; failing over", node=node.name)
        node.failed_at = self._clock()
        node.prepared = False

    def answered(self, node: SearchNode) -> None:
        """``node`` works again: it takes its share of reads from now on."""
        if node.failed_at is not None:
            self._log.info("search node answers again", node=node.name)
            node.failed_at = None

    def _in_read_order(self) -> list[SearchNode]:
        start = next(self._turns)
        rotated = self.nodes[start:] + self.nodes[:start]
        now = self._clock()
        # Nodes that failed lately come last rather than never: when every node failed, one may be back.
        return sorted(rotated, key=lambda node: node.failed_at is not None and now - node.failed_at < self._retry_after)

    async def _read(self, call: Callable[[SearchEngine], Awaitable[Result]]) -> Result:
        *before, last = self._in_read_order()
        for node in before:
            try:
                return await self._answered(node, call)
            except SearchEngineUnavailable:
                continue
        return await self._answered(last, call)

    async def _answered(self, node: SearchNode, call: Callable[[SearchEngine], Awaitable[Result]]) -> Result:
        try:
            result = await call(node.engine)
        except SearchEngineUnavailable:
            self.failed(node)
            raise
        self.answered(node)
        return result

    async def _each_reachable(self, call: Callable[[SearchEngine], Awaitable[None]]) -> None:
        """Apply to every node that answers; raise only when none does."""
        failures: list[SearchEngineError] = []
        for node in self.nodes:
            try:
                await call(node.engine)
            except SearchEngineUnavailable as exc:
                self.failed(node)
                failures.append(exc)
        if len(failures) == len(self.nodes):
            raise failures[0]

    async def _every(self, call: Callable[[SearchEngine], Awaitable[None]]) -> None:
        for node in self.nodes:
            try:
                await call(node.engine)
            except SearchEngineUnavailable as exc:
                self.failed(node)
                raise SearchEngineUnavailable(f"search node {node.name}: {exc}") from exc

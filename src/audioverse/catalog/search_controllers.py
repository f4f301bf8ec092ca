"""HTTP routes of search: catalog search, as-you-type suggestions, reindex and index status."""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, get_args

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi.spec import Example
from litestar.params import Parameter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.auth import PUBLIC, requires_curator
from audioverse.catalog.controllers import CATALOG_FILTERS
from audioverse.catalog.indexing import REINDEX_TASK, abandon_claim, claim_reindex, pending_changes, read_status
from audioverse.catalog.models import Audiobook
from audioverse.catalog.schemas import AudiobookRead
from audioverse.catalog.services import books_by_id
from audioverse.catalog.views import audiobook_read
from audioverse.errors import FieldError, ServiceUnavailable, Unprocessable, problem_responses
from audioverse.jobs import defer
from audioverse.types import Page, text_query
from search import SearchEngine, SearchEngineUnavailable
from search.query import (
    FACET_NAMES,
    MAX_SUGGESTIONS,
    FacetName,
    Highlights,
    SearchFilters,
    SearchQuery,
    SortOption,
    Suggestions,
)


class SearchItem(AudiobookRead):
    highlights: Highlights


class SearchPage(msgspec.Struct):
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


class SearchStatus(msgspec.Struct):
    engine: str
    index: str
    documents_in_index: int
    documents_in_database: int
    pending_changes: int
    last_synced_at: datetime | None
    reindex: ReindexProgress


_FACET_CHOICE = "(" + "|".join(get_args(FacetName)) + ")"
FACETS_PATTERN = f"^({_FACET_CHOICE}(,{_FACET_CHOICE})*)?$"


def parse_facets(facets: str | None) -> frozenset[Any]:
    names = frozenset(part.strip() for part in (facets or "").split(",") if part.strip())
    if unknown := names - FACET_NAMES:
        raise Unprocessable(
            f"Unknown facets: {', '.join(sorted(unknown))}.",
            errors=[FieldError(field="facets", message=f"Choose from {', '.join(sorted(FACET_NAMES))}.")],
        )
    return names


def search_query(
    catalog_filters: SearchFilters,
    page: Page,
    q: Annotated[str, text_query(500, "Search text.")] = "",
    sort: SortOption = "relevance",
    facets: Annotated[
        str | None,
        Parameter(
            pattern=FACETS_PATTERN,
            description=f"Comma list (no spaces) of facets to count: {', '.join(get_args(FacetName))}.",
            examples=[Example(value="genres,languages,duration")],
        ),
    ] = None,
) -> SearchQuery:
    """The engine query for the search endpoint's parameters, named as clients send them."""
    return SearchQuery(
        text=q, filters=catalog_filters, sort=sort, facets=parse_facets(facets), limit=page.limit, offset=page.offset
    )


def engine_down(exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable("Search is unavailable right now; try again shortly.", headers={"Retry-After": "5"})


class SearchController(Controller):
    tags = ["search"]

    @get(
        "/api/audiobooks/search",
        summary="Search the catalog (typo-tolerant, ranked, faceted)",
        description="`q` may be empty to browse with filters and facets. Filters as on the list. `facets` is a "
        "comma list of genres, languages, authors, narrators, duration; author and narrator facet values are "
        "ids. Each item carries `highlights` with matched words in `<mark>`.",
        opt=PUBLIC,
        dependencies={**CATALOG_FILTERS, "engine_query": Provide(search_query, sync_to_thread=False)},
        responses=problem_responses(
            HTTPStatus.BAD_REQUEST, HTTPStatus.UNPROCESSABLE_ENTITY, HTTPStatus.SERVICE_UNAVAILABLE
        ),
    )
    async def search_audiobooks(self, state: State, db_session: AsyncSession, engine_query: SearchQuery) -> SearchPage:
        engine: SearchEngine = state.search
        try:
            result = await engine.search(engine_query)
        except SearchEngineUnavailable as exc:
            raise engine_down(exc) from exc
        ids = [hit.id for hit in result.hits]
        books = await books_by_id(db_session, ids)
        items = [
            SearchItem(**msgspec.structs.asdict(audiobook_read(books[hit.id])), highlights=hit.highlights)
            for hit in result.hits
            # A book deleted a moment ago may still be in the index until the outbox drains.
            if hit.id in books
        ]
        return SearchPage(
            items=items,
            total=result.total,
            limit=engine_query.limit,
            offset=engine_query.offset,
            facets=result.facets,
            processing_time_ms=result.processing_time_ms,
        )

    @get(
        "/api/search/suggest",
        summary="As-you-type suggestions: audiobooks, authors and narrators",
        opt=PUBLIC,
        responses=problem_responses(HTTPStatus.SERVICE_UNAVAILABLE),
    )
    async def suggest(
        self,
        state: State,
        q: Annotated[str, text_query(200)] = "",
        limit: Annotated[int, Parameter(ge=1, le=MAX_SUGGESTIONS)] = 5,
    ) -> Suggestions:
        engine: SearchEngine = state.search
        try:
            return await engine.suggest(q, limit)
        except SearchEngineUnavailable as exc:
            raise engine_down(exc) from exc


class SearchAdminController(Controller):
    path = "/api/admin/search"
    tags = ["admin"]
    guards = [requires_curator]

    @post(
        "/reindex",
        summary="Rebuild the index from the database and swap it in (curators)",
        description="202 with the job id; searches keep answering from the old index meanwhile. 409 while "
        "another reindex runs.",
        status_code=HTTPStatus.ACCEPTED,
        responses=problem_responses(HTTPStatus.FORBIDDEN, HTTPStatus.CONFLICT),
    )
    async def reindex(self, state: State, db_session: AsyncSession) -> ReindexJob:
        status = await claim_reindex(state.search_store, db_session)
        await defer(db_session, REINDEX_TASK, msgspec.to_builtins(status))
        try:
            # Committed here rather than after the handler: a claim whose job was not saved must not
            # read as running until its lease lapses.
            await db_session.commit()
        except Exception:
            await abandon_claim(state.search_store, status)
            raise
        assert status.job_id is not None  # noqa: S101 - claim_reindex always sets it
        return ReindexJob(job_id=status.job_id)

    @get("/status", summary="Index, sync and reindex state (curators)")
    async def status(
        self, state: State, db_session: AsyncSession, request: Request[Any, Any, Any]
    ) -> Response[SearchStatus]:
        engine: SearchEngine = state.search
        try:
            in_index = await engine.count()
        except SearchEngineUnavailable as exc:
            raise engine_down(exc) from exc
        pending, last_synced = await pending_changes(db_session)
        job = await read_status(state.search_store)
        return Response(
            SearchStatus(
                engine=engine.name,
                index=state.settings.search_index,
                documents_in_index=in_index,
                documents_in_database=await db_session.scalar(select(func.count()).select_from(Audiobook)) or 0,
                pending_changes=pending,
                last_synced_at=last_synced,
                reindex=ReindexProgress(
                    state=job.state,
                    processed=job.processed,
                    total=job.total,
                    started_at=job.started_at,
                    finished_at=job.finished_at,
                    error=job.error,
                ),
            )
        )

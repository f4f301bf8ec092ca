"""HTTP routes of search: catalog search, as-you-type suggestions, reindex and index status."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Parameter, SkipValidation
from litestar.stores.base import Store
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.auth import PUBLIC, requires_curator
from audioverse.catalog.deps import AUDIOBOOKS, SEARCH_QUERY
from audioverse.catalog.indexing import index_status, start_reindex
from audioverse.catalog.schemas import ReindexJob, SearchPage, SearchStatus
from audioverse.catalog.services import AudiobookService, engine_errors_as_503
from audioverse.config import Settings
from audioverse.errors import problem_responses
from audioverse.types import text_query
from search import SearchEngine
from search.query import MAX_SUGGESTIONS, SearchQuery, Suggestions

# The engine is a Protocol, which Litestar cannot check a value against (isinstance), so it checks nothing.
Engine = NamedDependency[SkipValidation[SearchEngine]]


class SearchController(Controller):
    tags = ["search"]
    dependencies = AUDIOBOOKS

    @get(
        "/api/audiobooks/search",
        summary="Search the catalog (typo-tolerant, ranked, faceted)",
        description="`q` may be empty to browse with filters and facets (most played first). Books matching more "
        "of the words rank first; a word that matches nothing lowers no book's rank instead of emptying the "
        "result; of equal matches the shortest title comes first. Filters as on the list. `facets` is a "
        "comma list of genres, languages, authors, narrators, duration; author and narrator facet values are "
        "ids. Each item carries `highlights` with matched words in `<mark>`.",
        opt=PUBLIC,
        dependencies=SEARCH_QUERY,
        responses=problem_responses(
            HTTPStatus.BAD_REQUEST, HTTPStatus.UNPROCESSABLE_ENTITY, HTTPStatus.SERVICE_UNAVAILABLE
        ),
    )
    async def search_audiobooks(
        self,
        search: Engine,
        audiobooks: NamedDependency[AudiobookService],
        engine_query: NamedDependency[SearchQuery],
    ) -> SearchPage:
        return await audiobooks.search(search, engine_query)

    @get(
        "/api/search/suggest",
        summary="As-you-type suggestions: audiobooks, authors and narrators",
        opt=PUBLIC,
        responses=problem_responses(HTTPStatus.SERVICE_UNAVAILABLE),
    )
    async def suggest(
        self,
        search: Engine,
        q: Annotated[str, text_query(200)] = "",
        limit: Annotated[int, Parameter(ge=1, le=MAX_SUGGESTIONS)] = 5,
    ) -> Suggestions:
        with engine_errors_as_503():
            return await search.suggest(q, limit)


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
    async def reindex(
        self, search_store: NamedDependency[Store], db_session: NamedDependency[AsyncSession]
    ) -> ReindexJob:
        return ReindexJob(job_id=await start_reindex(search_store, db_session))

    @get("/status", summary="Index, sync and reindex state (curators)")
    async def status(
        self,
        search: Engine,
        search_store: NamedDependency[Store],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
    ) -> Response[SearchStatus]:
        return Response(await index_status(search, search_store, db_session, settings.search_index))

"""HTTP routes of search: catalog search, as-you-type suggestions, and the curators' reindex, status and tuning."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter, SkipValidation
from litestar.stores.base import Store
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.auth import requires_curator
from audioverse.catalog.deps import AUDIOBOOKS, PUBLIC_SHARED, SEARCH_QUERY, SYNONYMS, ZERO_RESULTS
from audioverse.catalog.indexing import index_status, start_reindex
from audioverse.catalog.schemas import (
    ReindexJob,
    SearchPage,
    SearchStatus,
    SynonymSetsRead,
    SynonymSetsWrite,
    ZeroResultRead,
)
from audioverse.catalog.services import (
    AudiobookService,
    SynonymService,
    ZeroResultService,
    ZeroResultTally,
    engine_errors_as_503,
)
from audioverse.config import Settings
from audioverse.errors import problem_responses
from audioverse.response_cache import keep_out_of_shared_cache
from audioverse.types import ListPage, Page, text_query
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
        "ids. Each item is the list form as the search index holds it (an edit shows here once indexed, within "
        "seconds; `play_count` as of the book's last indexing) and carries `highlights` with matched words in "
        "`<mark>`. Curators' synonym sets apply "
        "(`/api/admin/search/synonyms/`); a first page of text without filters that finds nothing is counted, "
        "without who sent it, in `/api/admin/search/zero-results/`.",
        opt=PUBLIC_SHARED,
        cache=True,
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
        zero_result_tally: NamedDependency[ZeroResultTally],
        request: Request[Any, Any, Any],
    ) -> SearchPage:
        page = await audiobooks.search(search, engine_query, zero_result_tally)
        if not page.total:
            keep_out_of_shared_cache(request)  # each search that finds nothing is counted for the report
        return page

    @get(
        "/api/search/suggest",
        summary="As-you-type suggestions: audiobooks, authors and narrators",
        opt=PUBLIC_SHARED,
        cache=True,
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

    @get(
        "/synonyms",
        summary="The synonym sets searches apply (curators)",
        description="Until a curator saves a list, the shipped defaults: numbers and ordinals 1-100 as digits and "
        "words, and dr/doctor, st/saint, mr/mister, mrs/missus, &/and.",
        dependencies=SYNONYMS,
        responses=problem_responses(HTTPStatus.FORBIDDEN),
    )
    async def synonyms(self, synonyms: NamedDependency[SynonymService]) -> SynonymSetsRead:
        return await synonyms.current()

    @put(
        "/synonyms",
        summary="Replace the synonym sets (curators)",
        description="The whole list: each set's terms stand for one another in searches on both engines, from the "
        "next search on, without a reindex. Terms are stored lowercased with single spaces; a set needs two "
        "different terms (422). 503 when the engine cannot take the list, which is then not saved.",
        dependencies=SYNONYMS,
        responses=problem_responses(
            HTTPStatus.BAD_REQUEST,
            HTTPStatus.FORBIDDEN,
            HTTPStatus.UNPROCESSABLE_ENTITY,
            HTTPStatus.SERVICE_UNAVAILABLE,
        ),
    )
    async def replace_synonyms(
        self, data: JSONBody[SynonymSetsWrite], search: Engine, synonyms: NamedDependency[SynonymService]
    ) -> SynonymSetsRead:
        return await synonyms.replace(search, data)

    @get(
        "/zero-results",
        summary="The searches that found nothing, most frequent first (curators)",
        description="Texts of first pages searched without filters, lowercased with spaces collapsed, with no "
        "user attached; where synonyms are missing. Each server process adds its counts every 10 s.",
        dependencies=ZERO_RESULTS,
        responses=problem_responses(HTTPStatus.FORBIDDEN, HTTPStatus.UNPROCESSABLE_ENTITY),
    )
    async def zero_results(
        self,
        zero_result_queries: NamedDependency[ZeroResultService],
        zero_result_tally: NamedDependency[ZeroResultTally],
        page: NamedDependency[Page],
    ) -> ListPage[ZeroResultRead]:
        return ListPage.of(await zero_result_queries.top(page, zero_result_tally))

"""The result window: engines answer up to offset + limit = 10,000 and are never asked for more."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from search import SearchEngine, SearchEngineError, SearchQuery
from search.embedded import EmbeddedSearchEngine
from search.query import MAX_RESULT_WINDOW
from tests.search.catalog import CATALOG

SORTS = ["relevance", "title"]


@pytest.mark.parametrize(("offset", "limit"), [(MAX_RESULT_WINDOW - 19, 20), (10**9, 20), (2**63, 1)])
def test_a_query_past_the_window_cannot_be_built(offset: int, limit: int) -> None:
    with pytest.raises(ValueError, match="offset \\+ limit"):
        SearchQuery(offset=offset, limit=limit)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"offset": offset, "limit": limit}, SearchQuery)


@pytest.mark.parametrize("sort", SORTS)
async def test_the_last_page_of_the_window_has_the_exact_total(catalog_engine: SearchEngine, sort: str) -> None:
    deepest = await catalog_engine.search(
        SearchQuery(sort=sort, limit=20, offset=MAX_RESULT_WINDOW - 20, facets=frozenset({"languages"}))  # type: ignore[arg-type]
    )
    assert (deepest.hits, deepest.total) == ([], len(CATALOG))
    assert sum(deepest.facets["languages"].values()) == len(CATALOG)


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("offset", [MAX_RESULT_WINDOW, 99_999_999, 1_000_000_000])
async def test_the_embedded_engine_refuses_a_window_past_the_limit_instead_of_allocating_it(
    tmp_path: Path, sort: str, offset: int
) -> None:
    """tantivy reserves offset + limit slots up front; 10**9 used to abort the whole process."""
    engine = EmbeddedSearchEngine(tmp_path)
    try:
        await engine.upsert(CATALOG)
        forced = SearchQuery(sort=sort)  # type: ignore[arg-type]
        msgspec.structs.force_setattr(forced, "offset", offset)  # past SearchQuery's own check, as a bug might
        with pytest.raises(SearchEngineError, match=f"must not exceed {MAX_RESULT_WINDOW}"):
            await engine.search(forced)
        assert (await engine.search(SearchQuery(sort=sort))).total == len(CATALOG)  # type: ignore[arg-type]
    finally:
        await engine.close()

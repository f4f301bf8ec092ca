"""Curators tune search: synonym sets both engines apply at once, and the report of searches that found nothing."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from advanced_alchemy.config import SQLAlchemyAsyncConfig
from litestar.stores.memory import MemoryStore

from audioverse.app import configure_search
from audioverse.catalog import services
from audioverse.catalog.default_synonyms import default_synonym_sets
from audioverse.catalog.schemas import MAX_SYNONYM_SETS
from audioverse.catalog.services import ZeroResultService, ZeroResultTally
from search.embedded import EmbeddedSearchEngine
from search.query import SearchFilters, SearchQuery
from tests.accounts.test_auth_flow import bearer
from tests.catalog.fixtures import MakeBook, Tokens
from tests.catalog.test_search_api import Client, ids, search, wait_for
from tests.search.catalog import BY_TITLE

pytestmark = pytest.mark.search
SYNONYMS = "/api/admin/search/synonyms/"
ZERO_RESULTS = "/api/admin/search/zero-results/"


@pytest.fixture
async def synonyms_restored(client: Client, curator: Tokens) -> AsyncIterator[None]:
    """The engine is shared by the session's tests: hand it the defaults back after a test changes them."""
    yield
    restored = await client.put(SYNONYMS, headers=bearer(curator), json={"sets": default_synonym_sets()})
    assert restored.status_code == 200, restored.text


async def test_curators_read_the_shipped_synonyms_and_no_one_else_does(
    client: Client, curator: Tokens, uploader: Tokens
) -> None:
    shipped = await client.get(SYNONYMS, headers=bearer(curator))
    assert shipped.status_code == 200
    body = shipped.json()
    assert body["is_default"] is True
    assert body["updated_at"] is None
    for expected in (["80", "eighty"], ["21st", "twenty-first"], ["dr", "doctor"], ["st", "saint"], ["&", "and"]):
        assert expected in body["sets"]
    assert (await client.get(SYNONYMS, headers=bearer(uploader))).status_code == 403
    assert (await client.get(SYNONYMS)).status_code == 401
    assert (await client.put(SYNONYMS, headers=bearer(uploader), json={"sets": []})).status_code == 403


async def test_the_shipped_synonyms_find_numbers_written_either_way(
    client: Client, make_book: MakeBook, tag: str
) -> None:
    book_id = await make_book(title=f"Around the World in Eighty Days {tag}", genres=(f"Genre {tag}",))
    await wait_for(client, lambda body: book_id in ids(body), q="eighty", genre=f"genre-{tag}")
    assert ids(await search(client, q="80", genre=f"genre-{tag}")) == [book_id]


@pytest.mark.usefixtures("synonyms_restored")
async def test_saved_synonyms_apply_from_the_next_search_without_a_reindex(
    client: Client, make_book: MakeBook, tag: str, curator: Tokens
) -> None:
    book_id = await make_book(title=f"Zorbleflux {tag}", genres=(f"Genre {tag}",))
    await wait_for(client, lambda body: book_id in ids(body), q="zorbleflux", genre=f"genre-{tag}")
    assert ids(await search(client, q="snarkwidget", genre=f"genre-{tag}")) == []

    saved = await client.put(
        SYNONYMS, headers=bearer(curator), json={"sets": [["  SnarkWidget ", "zorbleflux", "snarkwidget"], ["a", "b"]]}
    )
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["sets"] == [["snarkwidget", "zorbleflux"], ["a", "b"]]
    assert body["is_default"] is False
    assert body["updated_at"] is not None
    assert (await client.get(SYNONYMS, headers=bearer(curator))).json() == body
    # No waiting: the engine has the sets once the PUT answers.
    assert ids(await search(client, q="snarkwidget", genre=f"genre-{tag}")) == [book_id]
    # The saved list replaces the defaults whole, from the very next search: a drain that had read the
    # earlier list lands it before this PUT hands over the new one, never after (they take turns).
    await client.put(SYNONYMS, headers=bearer(curator), json={"sets": []})
    assert ids(await search(client, q="snarkwidget", genre=f"genre-{tag}")) == []


@pytest.mark.parametrize(
    "sets",
    [
        [["Dr", "dr "]],  # one term once lowercased
        [["dr"]],  # a set of one
        [["dr", ""]],  # an empty term
        [["dr", "   "]],  # only spaces
        [["dr", "doc\ntor"]],  # a control character
        [["dr", "\x00"]],  # NUL alone
        [["dr", "doc\x00tor"]],  # NUL inside
        [["dr", "x" * 51]],  # too long
        [["a", "b"]] * (MAX_SYNONYM_SETS + 1),  # too many sets
        [[str(n) for n in range(21)]],  # too many terms in a set
        "dr doctor",  # not a list of sets
    ],
)
async def test_a_bad_synonym_list_is_refused_and_changes_nothing(client: Client, curator: Tokens, sets: Any) -> None:
    before = (await client.get(SYNONYMS, headers=bearer(curator))).json()
    refused = await client.put(SYNONYMS, headers=bearer(curator), json={"sets": sets})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert (await client.get(SYNONYMS, headers=bearer(curator))).json() == before


@pytest.mark.usefixtures("synonyms_restored")
async def test_a_restarted_engine_gets_the_saved_synonyms_from_the_database(
    client: Client, curator: Tokens, database: SQLAlchemyAsyncConfig, tmp_path: Path
) -> None:
    saved = await client.put(SYNONYMS, headers=bearer(curator), json={"sets": [["snarkwidget", "zorbleflux"]]})
    assert saved.status_code == 200
    # The embedded engine keeps synonyms in memory: what a start does is all a new process has.
    engine = EmbeddedSearchEngine(tmp_path)
    try:
        assert await configure_search(engine, database, MemoryStore()) is None
        await engine.upsert([book_document("Zorbleflux")])
        assert [hit.id for hit in (await engine.search(SearchQuery(text="snarkwidget"))).hits] == [1]
    finally:
        await engine.close()


def book_document(title: str) -> Any:

    return msgspec.structs.replace(BY_TITLE["Dracula"], id=1, title=title, description="", authors=[], series=None)


async def zero_results(client: Client, curator: Tokens, **params: Any) -> dict[str, int]:
    response = await client.get(ZERO_RESULTS, headers=bearer(curator), params=params)
    assert response.status_code == 200, response.text
    return {item["query"]: item["searches"] for item in response.json()["items"]}


async def test_searches_that_found_nothing_are_counted_for_curators(
    client: Client, make_book: MakeBook, tag: str, curator: Tokens, uploader: Tokens
) -> None:
    book_id = await make_book(title=f"Findable {tag}", genres=(f"Genre {tag}",))
    await wait_for(client, lambda body: book_id in ids(body), q=f"findable {tag}")
    missing = f"q{secrets.token_hex(4)}"
    for text in (f"Qwxzv {missing}", f"  QWXZV   {missing} ", f"qwxzv {missing}"):
        assert (await search(client, q=text))["total"] == 0
    assert (await search(client, q=f"qwxzv {missing} another"))["total"] == 0
    # Not counted: a search that found something, a filtered one, a later page.
    await search(client, q=f"findable {tag}")
    assert (await search(client, q=f"filtered {missing}", genre="no-such-genre"))["total"] == 0
    assert (await search(client, q=f"paged {missing}", offset=20))["total"] == 0

    report = await zero_results(client, curator)
    ours = {query: count for query, count in report.items() if missing in query}
    # The most frequent first.
    assert list(ours.items()) == [(f"qwxzv {missing}", 3), (f"qwxzv {missing} another", 1)]
    response = await client.get(ZERO_RESULTS, headers=bearer(curator))
    first = response.json()["items"][0]
    assert first["first_seen_at"] <= first["last_seen_at"]
    assert (await client.get(ZERO_RESULTS, headers=bearer(uploader))).status_code == 403
    assert (await client.get(ZERO_RESULTS, params={"limit": 0}, headers=bearer(curator))).status_code == 422


def test_the_tally_hands_over_its_counts_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    tally = ZeroResultTally(flush_seconds=10, clock=lambda: now[0])
    tally.note(SearchQuery(text="Moby  Dik"), total=0)
    tally.note(SearchQuery(text="moby dik"), total=0)
    tally.note(SearchQuery(text="moby dick"), total=3)
    tally.note(SearchQuery(text="", filters=SearchFilters(genre="x")), total=0)
    assert tally.take(only_if_due=True) == {}
    now[0] = 10.0
    assert tally.take(only_if_due=True) == {"moby dik": 2}
    assert tally.take() == {}
    # A flood of distinct texts between two writes stops adding new ones, but the known ones still count.
    monkeypatch.setattr(services, "MAX_PENDING_ZERO_RESULT_QUERIES", 2)
    for text in ("a", "b", "c", "a"):
        tally.note(SearchQuery(text=text), total=0)
    assert tally.take() == {"a": 2, "b": 1}


async def test_the_report_keeps_the_most_searched_when_it_is_full(
    database: SQLAlchemyAsyncConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "MAX_ZERO_RESULT_QUERIES", 3)
    async with database.get_session() as session, session.begin():
        report = ZeroResultService(session=session)
        await report.add({"often": 5, "twice": 2, "once": 1})
        await report.add({"often": 1, "new": 3})
        rows = {row.query: row.searches for row in await report.get_many()}
    assert rows == {"often": 6, "new": 3, "twice": 2}

"""What only the Meilisearch adapter does: its filter syntax, task failures, totals, an absent server."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from datetime import date

import msgspec
import pytest
from meilisearch_python_sdk import AsyncClient

from search import SearchEngineAccessDenied, SearchEngineError, SearchEngineUnavailable, SearchFilters, SearchQuery
from search.meilisearch import MeilisearchEngine, filter_expressions, quoted
from tests.search.catalog import CATALOG
from tests.services import MeilisearchServer, free_port, unique_name


@pytest.fixture
async def meili_engine(meilisearch: MeilisearchServer) -> AsyncIterator[MeilisearchEngine]:
    engine = MeilisearchEngine(meilisearch.url, meilisearch.master_key, index=unique_name("books"))
    await engine.configure()
    yield engine
    await engine.drop_staging()
    await engine.close()
    async with AsyncClient(meilisearch.url, meilisearch.master_key) as client:
        for uid in (engine.audiobooks_index, engine.people_index):
            await client.delete_index_if_exists(uid)


def test_string_values_become_one_quoted_literal() -> None:
    assert quoted('en" OR language = "fr') == r'"en\" OR language = \"fr"'
    assert quoted("a\\") == r'"a\\"'


def test_filters_translate_to_typed_expressions() -> None:
    filters = SearchFilters(
        genre="sci-fi",
        author_id=3,
        narrator_id=4,
        language="en",
        duration_min=60,
        duration_max=7200.5,
        released_after=date(1900, 1, 1),
        released_before=date(1900, 1, 2),
        min_rating=4,
    )

    assert filter_expressions(filters) == [
        'genres.slug = "sci-fi"',
        "authors.id = 3",
        "narrators.id = 4",
        'language = "en"',
        "duration_seconds >= 60.0",
        "duration_seconds <= 7200.5",
        f"release_day >= {date(1900, 1, 1).toordinal()}",
        f"release_day <= {date(1900, 1, 2).toordinal()}",
        "average_rating >= 4.0",
    ]


def test_a_string_smuggled_into_a_numeric_filter_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid literal for int"):
        filter_expressions(SearchFilters(author_id="1 OR authors.id EXISTS"))  # type: ignore[arg-type]


async def test_extreme_numeric_filters_are_read_as_numbers(meili_engine: MeilisearchEngine) -> None:
    await meili_engine.upsert(CATALOG[:1])
    huge = SearchFilters(duration_max=2.2318915011536727e306, min_rating=0.0)
    tiny = SearchFilters(duration_min=3.5e-248)
    beyond = SearchFilters(duration_min=7.8e307)

    assert (await meili_engine.search(SearchQuery(filters=huge))).total == 1
    assert (await meili_engine.search(SearchQuery(filters=tiny))).total == 1
    assert (await meili_engine.search(SearchQuery(filters=beyond))).total == 0


async def test_totals_stay_exact_beyond_meilisearchs_default_cap(meili_engine: MeilisearchEngine) -> None:
    template = CATALOG[0]
    many = [msgspec.structs.replace(template, id=book_id, title=f"Volume {book_id}") for book_id in range(1, 1501)]
    await meili_engine.upsert(many)

    result = await meili_engine.search(SearchQuery(text="volume", limit=50, offset=1450, sort="title"))

    assert result.total == 1500
    assert len(result.hits) == 50


async def test_a_failed_indexing_task_raises_with_meilisearchs_reason(
    meili_engine: MeilisearchEngine, meilisearch: MeilisearchServer
) -> None:
    async with AsyncClient(meilisearch.url, meilisearch.master_key) as client:
        # Someone else gave the index another primary key, so Meilisearch rejects our documents.
        await client.index(meili_engine.audiobooks_index).update(primary_key="isbn")

    with pytest.raises(SearchEngineError, match=r"task \d+ \(documentAdditionOrUpdate\) failed: index_primary_key"):
        await meili_engine.upsert(CATALOG[:1])


async def test_a_refused_request_is_an_engine_error(meilisearch: MeilisearchServer) -> None:
    engine = MeilisearchEngine(meilisearch.url, meilisearch.master_key, index=unique_name("books"))
    async with AsyncClient(meilisearch.url, meilisearch.master_key) as client:
        # An index someone made without our settings: nothing is sortable, so a sorted search is refused.
        await client.create_index(engine.audiobooks_index)  # returns once the index exists
    try:
        with pytest.raises(SearchEngineError, match="refused") as refused:
            await engine.search(SearchQuery(sort="title"))
        assert not isinstance(refused.value, SearchEngineUnavailable)
    finally:
        await engine.close()
        async with AsyncClient(meilisearch.url, meilisearch.master_key) as client:
            await client.delete_index_if_exists(engine.audiobooks_index)


@pytest.mark.parametrize(
    ("api_key", "reason"),
    [
        ("not-the-key", "the Meilisearch API key was refused (403 invalid_api_key)"),
        (None, "Meilisearch requires an API key and none is configured (401 missing_authorization_header)"),
    ],
)
async def test_a_wrong_or_missing_key_is_access_denied_everywhere(
    meilisearch: MeilisearchServer, api_key: str | None, reason: str
) -> None:
    engine = MeilisearchEngine(meilisearch.url, api_key, index=unique_name("books"))
    try:
        for call in (engine.health(), engine.search(SearchQuery()), engine.configure(), engine.upsert(CATALOG[:1])):
            with pytest.raises(SearchEngineAccessDenied) as denied:
                await call
            assert str(denied.value) == reason
    finally:
        await engine.close()


async def test_health_names_a_live_index_that_does_not_exist(meilisearch: MeilisearchServer) -> None:
    engine = MeilisearchEngine(meilisearch.url, meilisearch.master_key, index=unique_name("books"))
    try:
        with pytest.raises(SearchEngineUnavailable, match=r"no such index yet .*404 index_not_found"):
            await engine.health()
        await engine.configure()
        await engine.health()
    finally:
        await engine.close()
        async with AsyncClient(meilisearch.url, meilisearch.master_key) as client:
            for uid in (engine.audiobooks_index, engine.people_index):
                await client.delete_index_if_exists(uid)


async def test_an_unreachable_server_is_reported_unavailable() -> None:
    engine = MeilisearchEngine(f"http://127.0.0.1:{free_port()}", "key", request_timeout_seconds=1)
    try:
        with pytest.raises(SearchEngineUnavailable):
            await engine.health()
        with pytest.raises(SearchEngineUnavailable):
            await engine.search(SearchQuery(text="anything"))
        with pytest.raises(SearchEngineUnavailable):
            await engine.upsert(CATALOG[:1])
    finally:
        await engine.close()


async def test_a_connection_reset_mid_request_is_reported_unavailable() -> None:
    # A server that dies mid-request resets the connection: the client wraps that read error in its
    # generic error, which once read as a refusal (a reindex losing Meilisearch failed as "refused").
    async def reset_after_the_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    server = await asyncio.start_server(reset_after_the_request, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    engine = MeilisearchEngine(f"http://127.0.0.1:{port}", "key", request_timeout_seconds=2)
    try:
        with pytest.raises(SearchEngineUnavailable):
            await engine.search(SearchQuery(text="anything"))
    finally:
        await engine.close()
        server.close()
        await server.wait_closed()

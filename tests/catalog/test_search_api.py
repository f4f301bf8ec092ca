"""Search end to end: catalog writes reach the engine through the outbox; search, suggest, reindex."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from advanced_alchemy.config import SQLAlchemyAsyncConfig
from litestar import Litestar
from litestar.stores.memory import MemoryStore
from litestar.testing import AsyncTestClient
from sqlalchemy import update

from audioverse.app import create_app
from audioverse.catalog import indexing
from audioverse.catalog.indexing import (
    REINDEX_LEASE_KEY,
    ReindexStatus,
    audiobook_documents,
    pending_changes,
    read_status,
    rebuild_an_empty_index,
    search_store_for,
    write_status,
)
from audioverse.catalog.models import CatalogOutbox, OutboxEntity, OutboxOperation
from audioverse.config import Settings
from search.embedded import EmbeddedSearchEngine
from tests.accounts.test_auth_flow import bearer
from tests.catalog.fixtures import MakeBook, Tokens
from tests.catalog.test_catalog_api import counted_statements
from tests.search.catalog import CATALOG
from tests.services import free_port

Client = AsyncTestClient[Litestar]
INDEX_WAIT_SECONDS = 10
pytestmark = pytest.mark.search


async def search(client: Client, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/audiobooks/search/", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_for(client: Client, predicate: Any, **params: Any) -> dict[str, Any]:
    """Search until ``predicate(body)`` holds: indexing is asynchronous by design."""
    with anyio.fail_after(INDEX_WAIT_SECONDS):
        while True:
            body = await search(client, **params)
            if predicate(body):
                return body
            await anyio.sleep(0.1)


def ids(body: dict[str, Any]) -> list[int]:
    return [item["id"] for item in body["items"]]


async def test_a_new_book_is_found_then_edits_and_deletes_follow(
    client: Client, make_book: MakeBook, tag: str, curator: Tokens
) -> None:
    book_id = await make_book(
        title=f"Frankenstein {tag}", authors=(f"Mary Shelley {tag}",), genres=(f"Genre {tag}",), duration=30000
    )
    found = await wait_for(client, lambda b: book_id in ids(b), q="Frankenstien", genre=f"genre-{tag}")
    item = found["items"][0]
    assert item["title"] == f"Frankenstein {tag}"
    assert "<mark>" in item["highlights"]["title"]
    assert item["authors"][0]["name"] == f"Mary Shelley {tag}"
    by_author = await search(client, q="Shelly", genre=f"genre-{tag}")
    assert book_id in ids(by_author)
    await client.patch(
        f"/api/audiobooks/{book_id}/", headers=bearer(curator), json={"title": f"The Modern Prometheus {tag}"}
    )
    await wait_for(client, lambda b: book_id in ids(b), q="Prometheus", genre=f"genre-{tag}")
    await client.delete(f"/api/audiobooks/{book_id}/", headers=bearer(curator))
    await wait_for(client, lambda b: b["total"] == 0, genre=f"genre-{tag}")


async def test_filters_facets_and_pagination(client: Client, make_book: MakeBook, tag: str) -> None:
    for index, (language, duration) in enumerate([("en", 1800), ("en", 20000), ("fr", 50000), ("de", 90000)]):
        await make_book(
            title=f"Volume {index} {tag}", language=language, duration=duration, genres=(f"Genre {tag}",),
            authors=(f"Writer {tag}",),
        )  # fmt: skip
    body = await wait_for(
        client, lambda b: b["total"] == 4, genre=f"genre-{tag}", facets="languages,duration,genres", limit=2
    )
    assert len(body["items"]) == 2
    assert body["facets"]["languages"] == {"en": 2, "fr": 1, "de": 1}
    assert body["facets"]["genres"] == {f"genre-{tag}": 4}
    assert sum(body["facets"]["duration"].values()) == 4
    assert body["processing_time_ms"] >= 0
    english = await search(client, genre=f"genre-{tag}", language="en", sort="duration_seconds")
    assert [item["duration_seconds"] for item in english["items"]] == [1800, 20000]
    long_ones = await search(client, genre=f"genre-{tag}", duration_min=20000, sort="-duration_seconds")
    assert [item["duration_seconds"] for item in long_ones["items"]] == [90000, 50000, 20000]
    second_page = await search(client, genre=f"genre-{tag}", sort="title", limit=2, offset=2)
    assert [item["title"].split()[1] for item in second_page["items"]] == ["2", "3"]
    assert second_page["total"] == 4


async def test_filter_values_cannot_change_the_filter(client: Client, make_book: MakeBook, tag: str) -> None:
    await make_book(title=f"Guarded {tag}", language="en", genres=(f"Genre {tag}",))
    await wait_for(client, lambda b: b["total"] == 1, genre=f"genre-{tag}")
    for injected in ['en" OR language != "xx', "en' OR 1=1 --", 'en") OR (language EXISTS']:
        body = await search(client, genre=f"genre-{tag}", language=injected)
        assert body["total"] == 0, injected
    sneaky_genre = await search(client, genre=f'genre-{tag}" OR genres.slug EXISTS OR "x')
    assert sneaky_genre["total"] == 0


async def test_bad_search_parameters_are_4xx(client: Client) -> None:
    bad = [
        {"facets": "price"},
        {"sort": "loudness"},
        {"limit": 0},
        {"limit": 101},
        {"author": "x"},
        {"duration_max": "inf"},
        {"released_before": "soon"},
    ]
    for params in bad:
        response = await client.get("/api/audiobooks/search/", params=params)
        assert response.status_code in {400, 422}, params
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_suggest(client: Client, make_book: MakeBook, tag: str) -> None:
    await make_book(
        title=f"Zanzibarian Nights {tag}", authors=(f"Zenobia Quillfeather {tag}",), narrators=(f"Zed Voice {tag}",)
    )
    body: dict[str, Any] = {}
    people: dict[str, Any] = {}
    # The book and its people are separate engine writes of one drain: either may land first.
    with anyio.fail_after(INDEX_WAIT_SECONDS):
        while not (body.get("audiobooks") and people.get("authors")):
            body = (await client.get("/api/search/suggest/", params={"q": "Zanzibar"})).json()
            people = (await client.get("/api/search/suggest/", params={"q": "Quillfea"})).json()
            await anyio.sleep(0.1)
    assert body["audiobooks"][0]["title"] == f"Zanzibarian Nights {tag}"
    assert people["authors"][0]["name"] == f"Zenobia Quillfeather {tag}"


async def test_reindex_rebuilds_the_index_and_reports_status(
    client: Client,
    app: Litestar,
    settings: Settings,
    profile: str,
    make_book: MakeBook,
    tag: str,
    curator: Tokens,
    uploader: Tokens,
) -> None:
    await make_book(title=f"Reindexed {tag}", genres=(f"Genre {tag}",))
    await wait_for(client, lambda b: b["total"] == 1, genre=f"genre-{tag}")
    assert (await client.post("/api/admin/search/reindex/", headers=bearer(uploader))).status_code == 403
    started = await client.post("/api/admin/search/reindex/", headers=bearer(curator))
    assert started.status_code == 202
    job_id = started.json()["job_id"]
    with anyio.fail_after(60):
        while True:
            status = (await client.get("/api/admin/search/status/", headers=bearer(curator))).json()
            if status["reindex"]["state"] in {"succeeded", "failed"}:
                break
            await anyio.sleep(0.2)
    assert status["reindex"]["state"] == "succeeded"
    assert status["reindex"]["processed"] == status["reindex"]["total"] > 0
    assert status["engine"] in {"embedded", "meilisearch"}
    assert (await search(client, genre=f"genre-{tag}"))["total"] == 1
    # While one runs, a second is refused. (The app's Redis client belongs to the app's event loop.)
    store = app.state.search_store if profile == "embedded" else search_store_for(settings)
    await write_status(store, ReindexStatus(state="running", job_id=job_id))
    conflict = await client.post("/api/admin/search/reindex/", headers=bearer(curator))
    assert conflict.status_code == 409
    assert conflict.json()["job_id"] == job_id
    await write_status(store, ReindexStatus(state="succeeded", job_id=job_id))


async def test_a_reindex_whose_process_died_reads_as_failed_and_another_may_start(
    client: Client, app: Litestar, settings: Settings, profile: str, curator: Tokens
) -> None:
    store = app.state.search_store if profile == "embedded" else search_store_for(settings)
    # What a worker killed mid-reindex leaves behind: "running", and a lease nobody renews.
    await write_status(store, ReindexStatus(state="running", job_id="killed", processed=3, total=10))
    await store.delete(REINDEX_LEASE_KEY)
    status = (await client.get("/api/admin/search/status/", headers=bearer(curator))).json()["reindex"]
    assert status["state"] == "failed"
    assert "stopped without finishing" in status["error"]
    started = await client.post("/api/admin/search/reindex/", headers=bearer(curator))
    assert started.status_code == 202, started.text
    with anyio.fail_after(60):
        while status["state"] != "succeeded":
            await anyio.sleep(0.2)
            status = (await client.get("/api/admin/search/status/", headers=bearer(curator))).json()["reindex"]
            assert status["state"] != "failed", status


async def test_an_unreachable_engine_is_503_and_named_by_ready(settings: Settings, tmp_path: Path) -> None:
    down = msgspec.structs.replace(
        settings,
        data_dir=tmp_path,
        search_backend="meilisearch",
        meilisearch_url=f"http://127.0.0.1:{free_port()}",
        readiness_timeout_seconds=1.0,
    )
    async with AsyncTestClient(create_app(down)) as client:
        response = await client.get("/api/audiobooks/search/", params={"q": "anything"})
        suggest = await client.get("/api/search/suggest/", params={"q": "any"})
        ready = await client.get("/api/ready")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert suggest.status_code == 503
    assert ready.status_code == 503
    assert "search" in ready.json()["detail"]


async def test_the_status_shows_how_long_the_oldest_unindexed_change_has_waited(
    database: SQLAlchemyAsyncConfig,
) -> None:
    now = datetime.now(UTC)
    async with database.get_session() as session:
        # Uncommitted: the drain running beside the test cannot take these rows in meanwhile.
        assert (await pending_changes(session, now)).changes == 0
        for waited in (90, 5):
            session.add(
                CatalogOutbox(
                    entity=OutboxEntity.AUDIOBOOK,
                    entity_id=1,
                    operation=OutboxOperation.UPSERT,
                    created_at=now - timedelta(seconds=waited),
                )
            )
        session.add(
            CatalogOutbox(
                entity=OutboxEntity.AUDIOBOOK,
                entity_id=2,
                operation=OutboxOperation.UPSERT,
                created_at=now - timedelta(seconds=600),
                processed_at=now - timedelta(seconds=1),
            )
        )
        await session.flush()
        pending = await pending_changes(session, now)
        await session.rollback()
    assert pending.changes == 2
    assert pending.lag_seconds == 90.0
    assert pending.last_synced_at == now - timedelta(seconds=1)


async def search_status(client: Client, curator: Tokens) -> dict[str, Any]:
    status: dict[str, Any] = (await client.get("/api/admin/search/status/", headers=bearer(curator))).json()
    return status


async def test_the_status_reports_no_lag_once_the_index_has_every_change(client: Client, curator: Tokens) -> None:
    with anyio.fail_after(30):
        while (status := await search_status(client, curator))["pending_changes"]:  # noqa: ASYNC110 - polling the drain
            await anyio.sleep(0.1)
    assert status["sync_lag_seconds"] == 0


async def test_a_page_is_answered_from_the_index_with_no_database_read_and_each_item_is_the_list_form(
    client: Client, app: Litestar, make_book: MakeBook, tag: str
) -> None:
    book_ids = {await make_book(title=f"Listed {n} {tag}", authors=(f"Lister {tag}",)) for n in range(3)}
    await wait_for(client, lambda b: set(ids(b)) == book_ids, q=f"Listed {tag}")
    with counted_statements(app) as statements:
        page = await search(client, q=f"Listed {tag}", limit=3)
    assert statements == []
    listed = {
        book["id"]: book for book in (await client.get("/api/audiobooks/", params={"limit": 100})).json()["items"]
    }
    for item in page["items"]:
        highlights = item.pop("highlights")
        assert "<mark>" in highlights["title"]
        assert item == listed[item["id"]]


async def test_a_document_indexed_without_its_listing_is_answered_from_the_database(
    client: Client, app: Litestar, make_book: MakeBook, tag: str
) -> None:
    book_id = await make_book(title=f"Unlisted {tag}")
    await wait_for(client, lambda b: ids(b) == [book_id], q=f"Unlisted {tag}")

    async def index_it_without_its_listing() -> None:
        # As an index written before documents carried their listing holds it. On the app's loop, which
        # its database and engine clients belong to.
        async with app.state.database.get_session() as session:
            (document,) = await audiobook_documents(session, [book_id])
        await app.state.search.upsert([msgspec.structs.replace(document, listing=None)])

    client.blocking_portal.call(index_it_without_its_listing)
    with counted_statements(app) as statements:
        page = await search(client, q=f"Unlisted {tag}", limit=5)  # a new address: not a cached answer
    assert statements  # read from the database
    (item,) = page["items"]
    item.pop("highlights")
    assert item == (await client.get("/api/audiobooks/", params={"limit": 100})).json()["items"][0]


async def test_a_listing_an_older_version_wrote_is_answered_from_the_database(
    client: Client, app: Litestar, make_book: MakeBook, tag: str
) -> None:
    book_id = await make_book(title=f"Outdated {tag}")
    await wait_for(client, lambda b: ids(b) == [book_id], q=f"Outdated {tag}")

    async def index_it_with_an_outdated_listing() -> None:
        # As a version whose list form lacked fields the current one requires wrote it.
        async with app.state.database.get_session() as session:
            (document,) = await audiobook_documents(session, [book_id])
        outdated = {"id": book_id, "title": f"Outdated {tag}"}
        await app.state.search.upsert([msgspec.structs.replace(document, listing=outdated)])

    client.blocking_portal.call(index_it_with_an_outdated_listing)
    page = await search(client, q=f"Outdated {tag}", limit=7)  # a new address: not a cached answer
    (item,) = page["items"]
    item.pop("highlights")
    assert item == (await client.get("/api/audiobooks/", params={"limit": 100})).json()["items"][0]


async def test_an_empty_index_over_a_catalog_with_books_is_rebuilt_at_start(
    database: SQLAlchemyAsyncConfig, make_book: MakeBook, tmp_path: Path
) -> None:
    store = MemoryStore()
    engine = EmbeddedSearchEngine(tmp_path / "index")  # as a new engine, or one that opened empty
    try:
        assert await rebuild_an_empty_index(engine, database, store) is None  # no book: nothing to rebuild
        book_id = await make_book(title="Lost with its disk")
        with anyio.fail_after(INDEX_WAIT_SECONDS):  # the deployment's drain takes the book's outbox row
            while True:
                async with database.get_session() as session:
                    if (await pending_changes(session)).changes == 0:
                        break
                await anyio.sleep(0.1)
        async with database.get_session() as session:
            # As on a first start that seeded: every book still waits in the outbox, for the drain to index.
            await session.execute(
                update(CatalogOutbox).where(CatalogOutbox.entity_id == book_id).values(processed_at=None)
            )
            await session.commit()
            assert await rebuild_an_empty_index(engine, database, store) is None
            await session.execute(update(CatalogOutbox).values(processed_at=datetime.now(UTC)))
            await session.commit()
        job_id = await rebuild_an_empty_index(engine, database, store)
        assert job_id is not None
        assert (await read_status(store)).job_id == job_id
        # Started once: a second process starting beside it finds the reindex running.
        assert await rebuild_an_empty_index(engine, database, store) is None
        await engine.upsert(CATALOG[:1])
        await write_status(store, ReindexStatus())
        assert await rebuild_an_empty_index(engine, database, store) is None  # not empty: left alone
    finally:
        await engine.close()


async def test_documents_are_read_in_chunks_and_all_come_back(
    database: SQLAlchemyAsyncConfig, make_book: MakeBook, tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    book_ids = [await make_book(title=f"Chunked {n} {tag}", authors=(f"Prolific {tag}",)) for n in range(5)]
    monkeypatch.setattr(indexing, "DOCUMENT_CHUNK", 2)  # as an author's 40,000 books against 5,000 a chunk
    async with database.get_session() as session:
        documents = await indexing.audiobook_documents(session, [*book_ids, 10**9])  # one that does not exist
    assert sorted(document.id for document in documents) == book_ids
    assert all(document.authors[0].name == f"Prolific {tag}" for document in documents)

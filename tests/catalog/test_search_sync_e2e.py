"""Search sync on the production stack: PostgreSQL, Redis, a real worker and scheduler, a restartable Meilisearch."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from advanced_alchemy.config import SQLAlchemyAsyncConfig
from litestar import Litestar
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.testing import AsyncTestClient
from meilisearch_python_sdk import AsyncClient
from meilisearch_python_sdk.errors import MeilisearchError
from redis.asyncio import Redis
from sqlalchemy import Select, func, select

from audioverse.accounts.models import Role
from audioverse.app import create_app
from audioverse.catalog.indexing import (
    PEOPLE,
    ReindexStatus,
    audiobook_documents,
    build_search_engine,
    claim_reindex,
    person_documents,
    read_status,
    reindex,
)
from audioverse.catalog.models import Audiobook, CatalogOutbox
from audioverse.config import Settings
from audioverse.db import sqlalchemy_config
from search import SearchEngineUnavailable
from search.meilisearch import audiobook_payload, person_payload
from tests.accounts.test_auth_flow import bearer
from tests.audio_fixtures import mp3_with_chapters
from tests.catalog.fixtures import Tokens, account, book_maker
from tests.catalog.test_upload_api import upload
from tests.services import (
    REDIS_URL,
    WORKER_START_TIMEOUT_SECONDS,
    MeilisearchServer,
    free_port,
    fresh_postgres_database,
    fresh_redis_namespace,
    production_settings,
    run_audioverse,
    run_meilisearch,
    run_scheduler,
    run_worker,
    until,
    worker_answers,
)

pytestmark = pytest.mark.slow

Client = AsyncTestClient[Litestar]
# A generous bound on how long an upload, edit or delete takes to reach search here: a busy CI machine
# is no place to time it. The 2 s a listener may wait is measured by bench/search_at_scale.py.
FRESHNESS_SECONDS = 30.0
# Retries after an outage come 5, 10, 15 s… apart, and the sweep runs every minute.
CONVERGENCE_SECONDS = 120
WARM_UP_SECONDS = 30
REINDEX_BOOKS = 10_000
PAGE = 1000


@dataclass
class Stack:
    settings: Settings
    meilisearch: MeilisearchServer
    client: Client
    curator: Tokens


@pytest.fixture(scope="module")
def meilisearch_of_its_own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeilisearchServer]:
    """A Meilisearch these tests may stop and restart without disturbing the rest of the session."""
    with run_meilisearch(tmp_path_factory.mktemp("meilisearch-sync")) as server:
        yield server


@pytest.fixture(scope="module")
async def stack(
    meilisearch_of_its_own: MeilisearchServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    async with fresh_postgres_database() as database_url, fresh_redis_namespace() as namespace:
        settings = production_settings(
            tmp_path_factory.mktemp("sync-data"),
            database_url=database_url,
            namespace=namespace,
            meilisearch=meilisearch_of_its_own,
        )
        with run_worker(settings), run_scheduler(settings):
            async with AsyncTestClient(app=create_app(settings)) as client:
                await worker_answers(settings)
                curator = await account(client, settings, Role.CURATOR, verified=True)
                # Additions and a deletion through the whole path first: the clocks below start on a
                # warm system. A fresh Meilisearch 1.21 takes about 1.8 s over the first task of each
                # kind on an index, then 60-90 ms.
                # The deleted book's author goes with it, warming deletions in the people index too.
                for n in range(3):
                    book_id = await book_maker(settings, tmp_path_factory, client)(
                        title=f"Warm-up {n}", authors=(f"Warm-up Author {n}",)
                    )
                    await wait_until_index_equals_database(settings, WARM_UP_SECONDS)
                deleted = await client.delete(f"/api/audiobooks/{book_id}/", headers=bearer(curator))
                assert deleted.status_code == 204, deleted.text
                await wait_until_index_equals_database(settings, WARM_UP_SECONDS)
                yield Stack(settings, meilisearch_of_its_own, client, curator)


async def database_documents(settings: Settings) -> tuple[dict[int, Any], dict[str, Any]]:
    """Every audiobook and person document as the database says they should be indexed."""
    database = sqlalchemy_config(settings)
    books: dict[int, Any] = {}
    people: dict[str, Any] = {}
    async with database.get_session() as session:
        ids = list(await session.scalars(select(Audiobook.id).order_by(Audiobook.id)))
        for start in range(0, len(ids), PAGE):
            for document in await audiobook_documents(session, ids[start : start + PAGE]):
                books[document.id] = audiobook_payload(document)
        for kind, model in PEOPLE.values():
            for person in await person_documents(session, kind, model):
                people[person.key] = person_payload(person)
    await database.get_engine().dispose()
    # The index holds JSON: compare like with like.
    as_json: tuple[dict[int, Any], dict[str, Any]] = msgspec.json.decode(
        msgspec.json.encode((books, people)), type=tuple[dict[int, Any], dict[str, Any]]
    )
    return as_json


async def indexed_documents(settings: Settings, url: str | None = None) -> tuple[dict[int, Any], dict[str, Any]]:
    """Every document in the live Meilisearch indexes, read straight from the server (``url``, else the one)."""
    async with AsyncClient(url or settings.meilisearch_url, settings.meilisearch_api_key) as meilisearch:
        return (
            await every_document(meilisearch, settings.search_index, "id"),
            await every_document(meilisearch, f"{settings.search_index}_people", "key"),
        )


async def every_document(meilisearch: AsyncClient, uid: str, key: str) -> dict[Any, Any]:
    documents: dict[Any, Any] = {}
    offset = 0
    while True:
        page = await meilisearch.index(uid).get_documents(offset=offset, limit=PAGE)
        documents.update((document[key], document) for document in page.results)
        offset += PAGE
        if offset >= page.total:
            return documents


async def claimed(database: SQLAlchemyAsyncConfig, store: Store) -> ReindexStatus:
    async with database.get_session() as session, session.begin():
        return await claim_reindex(store, session)


async def count_in_database(settings: Settings, counting: Select[tuple[int]]) -> int:
    database = sqlalchemy_config(settings)
    async with database.get_session() as session:
        found = await session.scalar(counting) or 0
    await database.get_engine().dispose()
    return found


COUNT_BOOKS = select(func.count()).select_from(Audiobook)
COUNT_PENDING_OUTBOX_ROWS = select(func.count()).where(CatalogOutbox.processed_at.is_(None))


async def wait_until_index_equals_database(settings: Settings, seconds: float) -> None:
    """Poll until the live index holds exactly the database's documents; on timeout, show the difference."""
    with anyio.move_on_after(seconds):
        while True:
            # The engine may still be coming back, or the people index not created yet.
            with contextlib.suppress(MeilisearchError):
                if await indexed_documents(settings) == await database_documents(settings):
                    return
            await anyio.sleep(0.5)
    (books, people), (expected_books, expected_people) = (
        await indexed_documents(settings),
        await database_documents(settings),
    )
    stale = sorted(book_id for book_id in expected_books if books.get(book_id) != expected_books[book_id])
    if stale:
        first, indexed = expected_books[stale[0]], books.get(stale[0], {})
        differences = {key: (indexed.get(key), value) for key, value in first.items() if indexed.get(key) != value}
        raise AssertionError(
            f"{len(stale)} stale or missing books, e.g. {stale[:5]}; book {stale[0]}'s (index, database): {differences}"
        )
    assert sorted(books) == sorted(expected_books), "books in the index but not in the database"
    assert people == expected_people


async def search(client: Client, **params: Any) -> Any:
    response = await client.get("/api/audiobooks/search/", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_uploaded_book_becomes_searchable_and_edits_and_deletes_follow(stack: Stack, tmp_path: Path) -> None:
    expected = mp3_with_chapters(tmp_path)
    tag = secrets.token_hex(4)
    response = await upload(
        stack.client, stack.curator, ("voyage.mp3", expected.path.read_bytes()), title=f"Circumnavigation {tag}"
    )
    assert response.status_code == 201, response.text
    book_id = response.json()["id"]

    async def found_by_a_typo() -> bool:
        return [item["id"] for item in (await search(stack.client, q=f"Circumnavigaiton {tag}"))["items"]] == [book_id]

    await until(found_by_a_typo, FRESHNESS_SECONDS)

    edited = await stack.client.patch(
        f"/api/audiobooks/{book_id}/", headers=bearer(stack.curator), json={"title": f"Crossing {tag}"}
    )
    assert edited.status_code == 200, edited.text

    async def crossings() -> int:
        total: int = (await search(stack.client, q=f"Crossing {tag}"))["total"]
        return total

    async def edit_found() -> bool:
        return await crossings() == 1

    async def delete_followed() -> bool:
        return await crossings() == 0

    await until(edit_found, FRESHNESS_SECONDS)
    deleted = await stack.client.delete(f"/api/audiobooks/{book_id}/", headers=bearer(stack.curator))
    assert deleted.status_code == 204
    await until(delete_followed, FRESHNESS_SECONDS)


async def test_edits_made_while_meilisearch_is_down_reach_the_index_after_it_restarts(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    make_book = book_maker(stack.settings, tmp_path_factory, stack.client)
    tag = secrets.token_hex(4)
    books = [await make_book(title=f"Outage {n} {tag}", authors=(f"Author {n} {tag}",)) for n in range(20)]
    await wait_until_index_equals_database(stack.settings, FRESHNESS_SECONDS * 5)

    stack.meilisearch.stop()
    ready = await stack.client.get("/api/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["search"] != "ok"
    assert (await stack.client.get("/api/audiobooks/search/", params={"q": "outage"})).status_code == 503
    curator = bearer(stack.curator)
    for edit in range(100):
        book_id = books[edit % len(books)]
        change: dict[str, Any] = [
            {"title": f"Outage {edit} revised {tag}"},
            {"description": f"Rewritten during the outage, edit {edit}."},
            {"authors": [f"Replacement Author {edit} {tag}"], "narrators": [f"Voice {edit} {tag}"]},
            {"language": "fr", "series": f"Saga {tag}", "series_position": edit},
        ][edit % 4]
        response = await stack.client.patch(f"/api/audiobooks/{book_id}/", headers=curator, json=change)
        assert response.status_code == 200, response.text
    for book_id in books[:2]:
        assert (await stack.client.delete(f"/api/audiobooks/{book_id}/", headers=curator)).status_code == 204
    assert await count_in_database(stack.settings, COUNT_PENDING_OUTBOX_ROWS) > 0

    # The worker's failed drains wait in Redis for a later retry instead of spinning.
    redis = Redis.from_url(stack.settings.redis_retries_url or REDIS_URL)

    async def retries_waiting() -> bool:
        return bool([key async for key in redis.scan_iter(match=f"{stack.settings.redis_namespace}:retries:*")])

    try:
        await until(retries_waiting, 30, interval=0.2)
    finally:
        await redis.aclose()
        stack.meilisearch.start()  # also when the wait failed: the module's later tests need it
    await wait_until_index_equals_database(stack.settings, CONVERGENCE_SECONDS)

    # Rows are marked done only after the engine confirms, so the index may match a moment before the
    # last batch commits; what must hold is that nothing stays pending.
    async def outbox_drained() -> bool:
        return await count_in_database(stack.settings, COUNT_PENDING_OUTBOX_ROWS) == 0

    await until(outbox_drained, FRESHNESS_SECONDS, interval=0.5)
    assert (await search(stack.client, q=f"Outage revised {tag}"))["total"] > 0


async def test_a_reindex_of_ten_thousand_books_never_leaves_a_search_failed_or_empty(stack: Stack) -> None:
    for command in (["seed", "--books", str(REINDEX_BOOKS), "--force"], ["search", "reindex"]):
        # The catalog, then a live index of it built by the command-line reindex.
        with run_audioverse(stack.settings, *command) as process:
            await anyio.to_thread.run_sync(process.wait)
        assert process.returncode == 0, command
    curator = bearer(stack.curator)
    # Demo titles, a typo'd author and a filter alone: each must always find something.
    queries: list[dict[str, Any]] = [
        {"q": "the"},
        {"q": "Dikens"},
        {"q": "", "language": "en", "sort": "-average_rating"},
        {"q": "advent", "facets": "genres,languages"},
    ]
    searches: list[int] = []
    failures: list[str] = []

    started = await stack.client.post("/api/admin/search/reindex/", headers=curator)
    assert started.status_code == 202, started.text
    second = await stack.client.post("/api/admin/search/reindex/", headers=curator)
    assert second.status_code == 409
    with anyio.fail_after(600):
        while True:
            for params in queries:
                response = await stack.client.get("/api/audiobooks/search/", params=params)
                searches.append(response.status_code)
                if response.status_code != 200 or not response.json()["items"]:
                    failures.append(f"{params}: {response.status_code} {response.text[:200]}")
            status = (await stack.client.get("/api/admin/search/status/", headers=curator)).json()
            if status["reindex"]["state"] != "running":
                break

    assert status["reindex"]["state"] == "succeeded", status["reindex"]
    assert status["reindex"]["processed"] >= REINDEX_BOOKS
    assert not failures, failures[:5]
    assert len(searches) >= 40, "the searches did not overlap the reindex"
    await wait_until_index_equals_database(stack.settings, CONVERGENCE_SECONDS)


async def test_a_reindex_that_loses_meilisearch_fails_cleanly_and_the_next_one_succeeds(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    make_book = book_maker(stack.settings, tmp_path_factory, stack.client)
    for n in range(max(0, 60 - await count_in_database(stack.settings, COUNT_BOOKS))):
        await make_book(title=f"Rebuilt {n}")
    database = sqlalchemy_config(stack.settings)
    store = MemoryStore()

    def stop_meilisearch_after_the_first_batch(processed: int, total: int) -> None:
        stack.meilisearch.stop()

    engine = build_search_engine(stack.settings)
    try:
        status = await claimed(database, store)
        with pytest.raises(SearchEngineUnavailable):
            await reindex(
                database, engine, store, status, batch_size=5, progress=stop_meilisearch_after_the_first_batch
            )
    finally:
        await engine.close()
        stack.meilisearch.start()
    failed = await read_status(store)
    assert failed.state == "failed"
    assert failed.error is not None
    assert failed.error.startswith("SearchEngineUnavailable: Meilisearch is unreachable")
    assert failed.processed < failed.total
    # The live index never saw the half-built one.
    await wait_until_index_equals_database(stack.settings, CONVERGENCE_SECONDS)

    engine = build_search_engine(stack.settings)
    try:
        finished = await reindex(database, engine, store, await claimed(database, store))
    finally:
        await engine.close()
        await database.get_engine().dispose()
    assert finished.state == "succeeded"
    assert finished.processed == finished.total
    await wait_until_index_equals_database(stack.settings, FRESHNESS_SECONDS * 5)


async def test_of_reindex_requests_sent_together_to_two_servers_exactly_one_starts(stack: Stack) -> None:
    ports = [free_port(), free_port()]
    with (
        run_audioverse(stack.settings, "run", "--port", str(ports[0])),
        run_audioverse(stack.settings, "run", "--port", str(ports[1])),
    ):
        async with httpx.AsyncClient(headers=bearer(stack.curator), timeout=30) as http:

            async def ready(port: int) -> bool:
                try:
                    return (await http.get(f"http://127.0.0.1:{port}/api/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            for port in ports:
                await until(lambda port=port: ready(port), WORKER_START_TIMEOUT_SECONDS * 2, interval=0.2)
            answers: list[int] = []

            async def request_reindex(port: int) -> None:
                response = await http.post(f"http://127.0.0.1:{port}/api/admin/search/reindex/")
                answers.append(response.status_code)

            async with anyio.create_task_group() as group:
                for n in range(10):
                    group.start_soon(request_reindex, ports[n % 2])
            assert sorted(answers) == [202] + [409] * 9

            async def finished() -> bool:
                status = (await http.get(f"http://127.0.0.1:{ports[0]}/api/admin/search/status/")).json()
                return bool(status["reindex"]["state"] != "running")

            await until(finished, CONVERGENCE_SECONDS, interval=0.2)
    await wait_until_index_equals_database(stack.settings, CONVERGENCE_SECONDS)

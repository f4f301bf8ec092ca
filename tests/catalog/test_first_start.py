"""A newcomer's first start: the demo catalog is searchable at once, not after the minute's job sweep."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from audioverse.app import create_app
from tests.services import MeilisearchServer, fresh_postgres_database, fresh_redis_namespace, production_settings
from tests.serving import audioverse_run

pytestmark = pytest.mark.slow

# Well inside the minute after which the periodic sweep would send the seed's search drain anyway.
FIRST_SEARCH_SECONDS = 10


def test_the_demo_catalog_is_searchable_right_after_the_first_start(tmp_path: Path) -> None:
    with audioverse_run(tmp_path / "var", seed_demo_on_startup="true", demo_books="3") as server:
        books = httpx.get(f"{server.url}/api/audiobooks/", params={"limit": 3}).json()["items"]
        assert len(books) == 3
        wanted = books[0]
        deadline = time.monotonic() + FIRST_SEARCH_SECONDS
        while True:
            found = httpx.get(f"{server.url}/api/audiobooks/search/", params={"q": wanted["title"]}).json()
            if wanted["id"] in [item["id"] for item in found["items"]]:
                break
            assert time.monotonic() < deadline, f"not searchable {FIRST_SEARCH_SECONDS} s after start: {server.log()}"
            time.sleep(0.2)


async def test_a_production_first_start_answers_its_first_search_from_the_seed_with_no_worker_running(
    tmp_path: Path, meilisearch: MeilisearchServer
) -> None:
    # With no worker, nothing but the app itself can have indexed the seed before its first answer.
    async with fresh_postgres_database() as database_url, fresh_redis_namespace() as namespace:
        settings = msgspec.structs.replace(
            production_settings(tmp_path, database_url=database_url, namespace=namespace, meilisearch=meilisearch),
            seed_demo_on_startup=True,
            demo_books=4,
        )
        async with AsyncTestClient(app=create_app(settings)) as client:
            books = (await client.get("/api/audiobooks/", params={"sort": "title"})).json()["items"]
            assert len(books) == 4
            for book in books:
                found = (await client.get("/api/audiobooks/search/", params={"q": book["title"]})).json()
                assert book["id"] in [item["id"] for item in found["items"]], book["title"]

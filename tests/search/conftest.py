"""Engines under test: every contract test runs on Meilisearch and on the embedded engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from meilisearch_python_sdk import AsyncClient

from search import SearchEngine
from search.embedded import EmbeddedSearchEngine
from search.meilisearch import MeilisearchEngine
from tests.search.catalog import CATALOG, PEOPLE
from tests.services import MeilisearchServer, unique_name

ENGINES = ["meilisearch", "embedded"]


async def open_engine(kind: str, request: pytest.FixtureRequest, directory: Path) -> SearchEngine:
    """A configured, empty engine of ``kind``: its own Meilisearch indexes or its own directory."""
    engine: SearchEngine
    if kind == "meilisearch":
        server: MeilisearchServer = request.getfixturevalue("meilisearch")
        engine = MeilisearchEngine(server.url, server.master_key, index=unique_name("audiobooks"))
    else:
        engine = EmbeddedSearchEngine(directory)
    await engine.configure()
    return engine


async def dispose(engine: SearchEngine, request: pytest.FixtureRequest) -> None:
    await engine.close()
    if isinstance(engine, MeilisearchEngine):
        server: MeilisearchServer = request.getfixturevalue("meilisearch")
        async with AsyncClient(server.url, server.master_key) as client:
            for uid in (engine.audiobooks_index, engine.people_index):
                await client.delete_index_if_exists(uid)


@pytest.fixture(scope="module", params=ENGINES)
async def catalog_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SearchEngine]:
    """An engine holding the fixture catalog, shared by the read-only tests of a module."""
    engine = await open_engine(request.param, request, tmp_path_factory.mktemp("catalog-index"))
    await engine.upsert(CATALOG)
    await engine.upsert_people(PEOPLE)
    yield engine
    await dispose(engine, request)


@pytest.fixture(params=ENGINES)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SearchEngine]:
    """A fresh, empty engine for a test that changes what is indexed."""
    fresh = await open_engine(request.param, request, tmp_path / "index")
    yield fresh
    await dispose(fresh, request)

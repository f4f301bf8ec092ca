"""Outbox drains on PostgreSQL take turns, so an edit made while another drain writes is never left behind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import pytest

from audioverse.catalog.indexing import drain_outbox
from audioverse.catalog.models import Audiobook
from audioverse.catalog.outbox import install_catalog_outbox
from audioverse.config import Settings
from audioverse.db import migrate_to_head, sqlalchemy_config
from search import AudiobookDocument, SearchQuery
from search.embedded import EmbeddedSearchEngine
from tests.catalog.fixtures import book_maker
from tests.services import fresh_postgres_database


class FirstWriteHeld(EmbeddedSearchEngine):
    """The embedded engine, whose first upsert waits to be let through: a drain caught between its read and write."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.first_write_started = anyio.Event()
        self.release_first_write = anyio.Event()
        self._writes = 0

    async def upsert(self, documents: Sequence[AudiobookDocument]) -> None:
        self._writes += 1
        if self._writes == 1:
            self.first_write_started.set()
            await self.release_first_write.wait()
        await super().upsert(documents)


@pytest.fixture
async def postgres_settings(tmp_path: Path) -> AsyncIterator[Settings]:
    async with fresh_postgres_database() as url:
        settings = Settings(data_dir=tmp_path, database_url=url)
        database = sqlalchemy_config(settings)
        await migrate_to_head(database)
        await database.get_engine().dispose()
        yield settings


async def test_an_edit_committed_while_another_drain_writes_reaches_the_index(
    postgres_settings: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    book_id = await book_maker(postgres_settings, tmp_path_factory)(title="Before the edit")
    database = sqlalchemy_config(postgres_settings)
    install_catalog_outbox(database)
    engine = FirstWriteHeld(tmp_path / "index")
    try:
        async with anyio.create_task_group() as drains:
            # The first drain reads the book as it was, then is held inside its engine write.
            drains.start_soon(drain_outbox, database, engine, 100)
            await engine.first_write_started.wait()
            async with database.get_session() as session:
                book = await session.get_one(Audiobook, book_id)
                book.title = "After the edit"
                await session.commit()
            # A second drain (another worker) starts on the edit's row while the first is still writing.
            drains.start_soon(drain_outbox, database, engine, 100)
            await anyio.sleep(1)
            engine.release_first_write.set()
        assert [hit.id for hit in (await engine.search(SearchQuery(text="after"))).hits] == [book_id]
        assert (await engine.search(SearchQuery(text="before"))).total == 0
    finally:
        await engine.close()
        await database.get_engine().dispose()

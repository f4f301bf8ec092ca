"""Migrations run from an empty database to head and back to base on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from advanced_alchemy.alembic.commands import AlembicCommands
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from audioverse.config import Settings
from audioverse.db import VERSION_TABLE, sqlalchemy_config
from tests.services import fresh_postgres_database


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    finally:
        await engine.dispose()
    return names


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    if request.param == "sqlite":
        yield Settings(data_dir=tmp_path)
        return
    async with fresh_postgres_database() as url:
        yield Settings(data_dir=tmp_path, database_url=url)


async def test_upgrade_to_head_and_downgrade_to_base(empty_database: Settings) -> None:
    config = sqlalchemy_config(empty_database)
    url = empty_database.resolved_database_url
    commands = AlembicCommands(sqlalchemy_config=config)
    await anyio.to_thread.run_sync(lambda: commands.downgrade("base"))
    await anyio.to_thread.run_sync(lambda: commands.upgrade("head"))
    after_upgrade = await _tables(url)
    assert VERSION_TABLE in after_upgrade
    await anyio.to_thread.run_sync(lambda: commands.downgrade("base"))
    after_downgrade = await _tables(url) - {VERSION_TABLE}
    assert after_downgrade == set()
    await anyio.to_thread.run_sync(lambda: commands.upgrade("head"))
    assert await _tables(url) == after_upgrade
    await config.get_engine().dispose()

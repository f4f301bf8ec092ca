"""Migrations run from an empty database to head and back to base on SQLite and PostgreSQL."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from advanced_alchemy.alembic.commands import AlembicCommands
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from audioverse import model_registry  # noqa: F401 - every model in the metadata compared
from audioverse.config import Settings
from audioverse.db import VERSION_TABLE, Base, migrate_to_head, sqlalchemy_config
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


async def test_the_migrated_schema_is_the_one_the_models_declare(empty_database: Settings) -> None:
    """Every table, column, type, index and constraint the models name, and nothing else, after ``upgrade head``."""
    config = sqlalchemy_config(empty_database)
    await migrate_to_head(config)

    def differences(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    try:
        with warnings.catch_warnings():
            # SQLite cannot reflect expression indexes (lower(name)); alembic says so and skips them.
            warnings.filterwarnings("ignore", message="autogenerate skipping metadata-specified expression-based index")
            async with config.get_engine().connect() as connection:
                assert await connection.run_sync(differences) == []
    finally:
        await config.get_engine().dispose()


async def test_a_deleted_rows_id_is_never_given_to_a_new_row(empty_database: Settings) -> None:
    """A client's cached book, a listener's cached recommendations: an id always means the same row."""
    config = sqlalchemy_config(empty_database)
    commands = AlembicCommands(sqlalchemy_config=config)
    engine = create_async_engine(empty_database.resolved_database_url)
    add_genre = text(
        "INSERT INTO genre (name, slug, description, created_at, updated_at)"
        " VALUES (:name, :name, '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP) RETURNING id"
    )
    try:
        # Rows written before the migration that stopped SQLite reusing ids keep their ids.
        await anyio.to_thread.run_sync(lambda: commands.upgrade("c0ffee000008"))
        async with engine.begin() as connection:
            first = (await connection.execute(add_genre, {"name": "first"})).scalar_one()
            newest = (await connection.execute(add_genre, {"name": "newest"})).scalar_one()
        await anyio.to_thread.run_sync(lambda: commands.upgrade("head"))
        async with engine.begin() as connection:
            kept = (await connection.execute(text("SELECT id, name FROM genre ORDER BY id"))).all()
            assert [tuple(row) for row in kept] == [(first, "first"), (newest, "newest")]
            await connection.execute(text("DELETE FROM genre WHERE id = :id"), {"id": newest})
            assert (await connection.execute(add_genre, {"name": "after"})).scalar_one() > newest
    finally:
        await engine.dispose()
        await config.get_engine().dispose()


async def test_every_sqlite_table_with_an_integer_id_autoincrements(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    config = sqlalchemy_config(settings)
    await anyio.to_thread.run_sync(lambda: AlembicCommands(sqlalchemy_config=config).upgrade("head"))
    engine = create_async_engine(settings.resolved_database_url)
    reusing = []
    try:
        async with engine.connect() as connection:
            for name, sql in await connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")):
                key = [column for column in await connection.exec_driver_sql(f"PRAGMA table_info({name})") if column.pk]
                if [column.type for column in key] == ["INTEGER"] and "AUTOINCREMENT" not in sql:
                    reusing.append(name)
    finally:
        await engine.dispose()
        await config.get_engine().dispose()
    assert not reusing, f"tables that would give a deleted row's id to the next row: {reusing}"

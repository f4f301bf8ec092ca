"""Database wiring: the model base, the advanced-alchemy config and migrations on start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from advanced_alchemy.alembic.commands import AlembicCommands
from advanced_alchemy.base import BigIntAuditBase
from advanced_alchemy.extensions.litestar import (
    AlembicAsyncConfig,
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
)
from sqlalchemy import event

from audioverse.config import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
VERSION_TABLE = "alembic_version"

# Every table of the service inherits this: integer ids plus created_at/updated_at in UTC.
Base = BigIntAuditBase


def sqlalchemy_config(settings: Settings) -> SQLAlchemyAsyncConfig:
    """The advanced-alchemy config for ``settings``' database (SQLite or PostgreSQL)."""
    url = settings.resolved_database_url
    engine = (
        EngineConfig(echo=settings.database_echo)
        if settings.uses_sqlite
        else EngineConfig(echo=settings.database_echo, pool_size=settings.database_pool_size, pool_pre_ping=True)
    )
    config = SQLAlchemyAsyncConfig(
        connection_string=url,
        engine_config=engine,
        session_config=AsyncSessionConfig(expire_on_commit=False),
        before_send_handler="autocommit",
        create_all=False,
        alembic_config=AlembicAsyncConfig(
            script_location=str(MIGRATIONS_DIR),
            version_table_name=VERSION_TABLE,
            render_as_batch=settings.uses_sqlite,
        ),
    )
    if settings.uses_sqlite:
        event.listen(config.get_engine().sync_engine, "connect", _sqlite_pragmas)
    return config


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # WAL lets readers and one writer work at once (the API reads while tasks write); a writer that
    # finds the database busy waits instead of failing at once; SQLite enforces foreign keys only on request.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def ensure_data_dir(settings: Settings) -> None:
    """Create the data directory that the embedded profile keeps its files in."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)


async def migrate_to_head(config: SQLAlchemyAsyncConfig) -> None:
    """Upgrade the database to the newest migration.

    Alembic's environment runs its own event loop, so it runs in a worker thread.
    """
    await anyio.to_thread.run_sync(lambda: AlembicCommands(sqlalchemy_config=config).upgrade("head"))

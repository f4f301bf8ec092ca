"""Database wiring: the model base, the advanced-alchemy config and migrations on start."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
from advanced_alchemy.alembic.commands import AlembicCommands
from advanced_alchemy.base import BigIntAuditBase
from advanced_alchemy.config import AlembicAsyncConfig, AsyncSessionConfig, SQLAlchemyAsyncConfig
from advanced_alchemy.extensions.litestar import EngineConfig
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig as LitestarSQLAlchemyConfig
from litestar.di import NamedDependency
from sqlalchemy import BigInteger, ColumnElement, Enum, Select, any_, bindparam, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker
from sqlalchemy.orm import QueryableAttribute, sessionmaker

from audioverse.config import Settings
from audioverse.errors import DomainError

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
VERSION_TABLE = "alembic_version"

# Every table of the service inherits this: integer ids plus created_at/updated_at in UTC.
Base = BigIntAuditBase


ConfigT = TypeVar("ConfigT", bound=SQLAlchemyAsyncConfig)


def text_enum(kind: type[enum.StrEnum], length: int = 16) -> Enum:
    """A column of ``kind``'s values stored as text (a string column, no database enum type to migrate)."""
    return Enum(kind, native_enum=False, length=length, values_callable=lambda members: [m.value for m in members])


def _config_options(settings: Settings) -> dict[str, Any]:
    engine = (
        EngineConfig(echo=settings.database_echo)
        if settings.uses_sqlite
        else EngineConfig(echo=settings.database_echo, pool_size=settings.database_pool_size, pool_pre_ping=True)
    )
    return {
        "connection_string": settings.resolved_database_url,
        "engine_config": engine,
        "session_config": AsyncSessionConfig(expire_on_commit=False),
        "create_all": False,
        "alembic_config": AlembicAsyncConfig(
            script_location=str(MIGRATIONS_DIR),
            version_table_name=VERSION_TABLE,
            render_as_batch=settings.uses_sqlite,
        ),
    }


def sqlalchemy_config(settings: Settings) -> SQLAlchemyAsyncConfig:
    """advanced-alchemy's plain config for ``settings``' database: tasks, commands, tests."""
    return _with_pragmas(SQLAlchemyAsyncConfig(**_config_options(settings)), settings)


AFTER_COMMIT_TASKS_KEY = "audioverse.after_commit_tasks"
"""``session.info`` list of tasks a commit started that the request waits for before it answers."""

PLUGIN_SESSION_KEY = "db_plugin_session"
"""The plugin's own request session; handlers ask for ``db_session``, which commits before the response."""


async def provide_db_session(db_plugin_session: NamedDependency[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """The request's session, committed after the handler returns and before the response is sent.

    Litestar runs a dependency's cleanup step between the handler and sending: a commit that fails
    raises there and becomes the error response (an ``IntegrityError`` a 409), where advanced-alchemy's
    autocommit ``before_send`` handler would log it and send the handler's success. A handler that
    raises is not committed; the plugin's default ``before_send`` handler closes the session, which
    rolls back whatever is left, unless it is a ``DomainError(keep_writes=True)``.
    """
    try:
        yield db_plugin_session
    except DomainError as exc:
        if exc.keep_writes:
            await commit_and_settle(db_plugin_session)
        raise
    await commit_and_settle(db_plugin_session)


async def commit_and_settle(session: AsyncSession) -> None:
    """Commit, then wait for the tasks the commit started (:data:`AFTER_COMMIT_TASKS_KEY`), such as a cache bump."""
    await session.commit()
    if tasks := session.info.pop(AFTER_COMMIT_TASKS_KEY, None):
        await asyncio.gather(*tasks)


def litestar_sqlalchemy_config(settings: Settings) -> LitestarSQLAlchemyConfig:
    """The config of the Litestar plugin (one per app: it registers request-scope keys globally)."""
    return _with_pragmas(
        LitestarSQLAlchemyConfig(**_config_options(settings), session_dependency_key=PLUGIN_SESSION_KEY), settings
    )


def session_factory(config: SQLAlchemyAsyncConfig) -> sessionmaker[Any]:
    """The synchronous session factory behind ``config``'s sessions: unit-of-work events are listened for on it.

    Listening here, rather than on SQLAlchemy's ``Session`` class, keeps one app's hooks off another
    app's (or a command's) sessions.
    """
    maker = config.create_session_maker()
    factory = maker.kw.get("sync_session_class") if isinstance(maker, async_sessionmaker) else None
    if not isinstance(factory, sessionmaker):
        raise TypeError(f"{type(config).__name__} builds no per-config session factory to listen on")
    return factory


def _with_pragmas(config: ConfigT, settings: Settings) -> ConfigT:
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


def one_of(column: ColumnElement[Any] | QueryableAttribute[Any], name: str, dialect: str) -> ColumnElement[bool]:
    """``column`` equal to one of the ids bound later as ``name`` (a list), in a statement built once per dialect.

    PostgreSQL takes the list as one array (``= ANY``): the statement's text, and so asyncpg's prepared
    statement, is the same whatever the list's length, where an IN list is re-rendered for each call.
    SQLite has no arrays: an expanding IN.
    """
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=postgresql.ARRAY(BigInteger)))
    return column.in_(bindparam(name, expanding=True))


def upsert_into(session: AsyncSession, model: type[Any]) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into ``model``'s table in the session's dialect, so it takes ON CONFLICT DO UPDATE/NOTHING.

    Both PostgreSQL and SQLite have the clause, but SQLAlchemy builds it only from the dialect's own ``insert``.
    """
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    return insert(model)


async def take_turns(session: AsyncSession, lock_id: int) -> None:
    """Wait until no other transaction holds turn ``lock_id``, then hold it until ``session``'s transaction ends.

    PostgreSQL: a transaction-scoped advisory lock, which serializes across processes. SQLite: the
    database's single write lock, taken now (see :func:`_write_lock_now`).
    """
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        await connection.execute(select(func.pg_advisory_xact_lock(lock_id)))
    else:
        await _write_lock_now(connection)


async def lock_for_update(session: AsyncSession, rows: Select[Any]) -> None:
    """Hold ``rows`` (a SELECT of their ids) until ``session``'s transaction ends, so read-then-write jobs take turns.

    PostgreSQL locks the rows (``FOR NO KEY UPDATE``: inserting a row that refers to them still goes
    ahead). SQLite has no row locks: the transaction takes the database's write lock now.
    """
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        await connection.execute(rows.with_for_update(key_share=True))
    else:
        await _write_lock_now(connection)


async def _write_lock_now(connection: AsyncConnection) -> None:
    # SQLite's driver runs reads outside any transaction until the first write, so a job could compute
    # from what it read and then write over a newer result: BEGIN IMMEDIATE takes the write lock before
    # the reads (waiting up to the busy timeout). A transaction that has written holds it already.
    driver = (await connection.get_raw_connection()).driver_connection
    if driver is not None and not driver.in_transaction:
        await connection.exec_driver_sql("BEGIN IMMEDIATE")


def ensure_data_dir(settings: Settings) -> None:
    """Create the data directory that the embedded profile keeps its files in."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)


async def migrate_to_head(config: SQLAlchemyAsyncConfig) -> None:
    """Upgrade the database to the newest migration.

    Alembic's environment runs its own event loop, so it runs in a worker thread.
    """
    await anyio.to_thread.run_sync(lambda: AlembicCommands(sqlalchemy_config=config).upgrade("head"))

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
from advanced_alchemy.config.routing import RoutingConfig
from advanced_alchemy.extensions.litestar import EngineConfig
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig as LitestarSQLAlchemyConfig
from advanced_alchemy.routing import RoutingAsyncSessionMaker, RoutingSyncSession, primary_context
from advanced_alchemy.routing.selectors import RoundRobinSelector
from litestar import Request
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Scope
from sqlalchemy import BigInteger, ColumnElement, Enum, Select, any_, bindparam, event, func, make_url, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapper, QueryableAttribute, Session, sessionmaker

from audioverse.config import Settings, SettingsError
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
        else EngineConfig(
            echo=settings.database_echo,
            pool_size=settings.database_pool_size,
            pool_timeout=settings.database_pool_timeout_seconds,
            pool_pre_ping=True,
        )
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
    """advanced-alchemy's plain config for ``settings``' database: tasks, commands, tests.

    Always the primary alone, replicas or not: tasks read what they then write.
    """
    return _with_pragmas(SQLAlchemyAsyncConfig(**_config_options(settings)), settings)


REPLICA_READS_KEY = "audioverse.replica_reads"
"""``session.info`` flag: the session's reads may come from a read replica, and so lag behind the primary."""

READ_ONLY_METHODS = frozenset({"GET", "HEAD"})


class ReplicaAwareSession(RoutingSyncSession):
    """advanced-alchemy's routing session, routing reads only where :data:`REPLICA_READS_KEY` allows it.

    Everything else (start-up work, a POST that reads what it is about to change) reads the primary.
    Where reads are allowed the library decides: writes, ``FOR UPDATE`` and, once the transaction has
    written, every read go to the primary (``sticky_after_write``).
    """

    def get_bind(
        self, mapper: Mapper[Any] | type[Any] | None = None, clause: Any | None = None, **kwargs: Any
    ) -> Engine:
        if self.info.get(REPLICA_READS_KEY):
            return super().get_bind(mapper, clause, **kwargs)
        with primary_context():
            return super().get_bind(mapper, clause, **kwargs)


class ReplicaRoutingSessions(RoutingAsyncSessionMaker):
    """advanced-alchemy's routing session maker, on the config's own primary engine, with a factory of its own.

    The library's routing sessions are all one class: a unit-of-work hook listened for on it would run
    for every app in the process. Ours come from one ``sessionmaker`` per config (:func:`session_factory`).
    """

    __slots__ = ("sessions", "sync_factory")
    sessions: async_sessionmaker[AsyncSession]
    sync_factory: sessionmaker[ReplicaAwareSession]

    def __init__(self, config: SQLAlchemyAsyncConfig, routing: RoutingConfig) -> None:
        primary = config.get_engine()

        def engine(url: str, **options: Any) -> AsyncEngine:
            # The config's engine is the primary that migrations, the readiness probe and shutdown use.
            return primary if url == config.connection_string else create_async_engine(url, **options)

        super().__init__(routing, config.engine_config_dict, config.session_config_dict, engine)
        selectors = {
            routing.default_group: RoundRobinSelector([primary.sync_engine]),
            routing.read_group: RoundRobinSelector([replica.sync_engine for replica in self.replica_engines]),
        }
        self.sync_factory = sessionmaker(
            class_=ReplicaAwareSession, routing_config=routing, selectors=selectors, default_engine=primary.sync_engine
        )
        self.sessions = async_sessionmaker(sync_session_class=self.sync_factory, **config.session_config_dict)

    def __call__(self) -> AsyncSession:  # type: ignore[override]  # the library's session class fixes its sync class
        return self.sessions()


def replica_engines(config: SQLAlchemyAsyncConfig) -> list[AsyncEngine]:
    """The engines of ``config``'s read replicas; none without routing."""
    maker = config.create_session_maker()
    return maker.replica_engines if isinstance(maker, ReplicaRoutingSessions) else []


def _replica_routing(settings: Settings) -> RoutingConfig | None:
    """Reads to ``settings``' replicas, writes to the primary; None when there are no replicas (one database)."""
    replicas = settings.database_read_replica_urls
    if not replicas:
        return None
    setting = "AUDIOVERSE_DATABASE_READ_REPLICA_URLS"
    if settings.uses_sqlite:
        raise SettingsError(f"{setting} needs a PostgreSQL AUDIOVERSE_DATABASE_URL: SQLite has no read replicas")
    driver = make_url(settings.resolved_database_url).drivername
    for url in replicas:
        try:
            replica = make_url(url)
        except ArgumentError as exc:
            raise SettingsError(f"{setting} holds an entry that is not a database URL: {exc}") from exc
        if replica.drivername != driver:
            shown = replica.render_as_string(hide_password=True)
            raise SettingsError(f"{setting}: {shown} must use the primary's driver, {driver}")
    return RoutingConfig(primary_connection_string=settings.resolved_database_url, read_replicas=list(replicas))


SAME_FOR_EVERY_CALLER = {"same_for_every_caller": True}
"""Route ``opt``: its answer does not depend on who asks, so the shared response cache serves signed-in callers too."""


def same_for_every_caller(handler: BaseRouteHandler) -> bool:
    """The route says its answer does not depend on who asks (:data:`SAME_FOR_EVERY_CALLER`)."""
    return bool(handler.opt.get("same_for_every_caller"))


def answer_is_the_callers_own(scope: Scope) -> bool:
    """The request carries credentials and its route may answer each caller differently."""
    handler = scope.get("route_handler")
    if handler is not None and same_for_every_caller(handler):
        return False
    return any(name == b"authorization" for name, _ in scope["headers"])


def may_read_a_replica(request: Request[Any, Any, Any]) -> bool:
    """A GET or HEAD whose answer goes to this client alone.

    An answer the shared response cache may store is read from the primary: a write ends the cached
    answers when it commits, and a lagging replica's answer stored just after would be served to everyone
    for the cache's whole lifetime.
    """
    if request.method not in READ_ONLY_METHODS:
        return False
    cache_on = bool(request.route_handler.cache and request.app.response_cache_config.default_expiration)
    return not cache_on or answer_is_the_callers_own(request.scope)


AFTER_COMMIT_TASKS_KEY = "audioverse.after_commit_tasks"
"""``session.info`` list of tasks a commit started that the request waits for before it answers."""

PLUGIN_SESSION_KEY = "db_plugin_session"
"""The plugin's own request session; handlers ask for ``db_session``, which commits before the response."""


async def provide_db_session(
    request: Request[Any, Any, Any], db_plugin_session: NamedDependency[AsyncSession]
) -> AsyncIterator[AsyncSession]:
    """The request's session, committed after the handler returns and before the response is sent.

    A GET or HEAD may read from a read replica (when there are any, see :func:`may_read_a_replica`);
    every other method reads the primary, since what it reads decides what it writes.

    Litestar runs a dependency's cleanup step between the handler and sending: a commit that fails
    raises there and becomes the error response (an ``IntegrityError`` a 409), where advanced-alchemy's
    autocommit ``before_send`` handler would log it and send the handler's success. A handler that
    raises is not committed; the plugin's default ``before_send`` handler closes the session, which
    rolls back whatever is left, unless it is a ``DomainError(keep_writes=True)``.
    """
    if may_read_a_replica(request):
        db_plugin_session.info[REPLICA_READS_KEY] = True
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
    """The config of the Litestar plugin (one per app: it registers request-scope keys globally).

    With read replicas its sessions route by advanced-alchemy's ``routing_config`` (see :class:`ReplicaAwareSession`).
    """
    options = _config_options(settings)
    routing = _replica_routing(settings)
    if routing is None:
        return _with_pragmas(LitestarSQLAlchemyConfig(**options, session_dependency_key=PLUGIN_SESSION_KEY), settings)
    del options["connection_string"]  # advanced-alchemy takes the primary's from the routing config
    config = LitestarSQLAlchemyConfig(**options, routing_config=routing, session_dependency_key=PLUGIN_SESSION_KEY)
    config.session_maker = ReplicaRoutingSessions(config, routing)
    return config


def session_factory(config: SQLAlchemyAsyncConfig) -> sessionmaker[Any]:
    """The synchronous session factory behind ``config``'s sessions: unit-of-work events are listened for on it.

    Listening here, rather than on SQLAlchemy's ``Session`` class, keeps one app's hooks off another
    app's (or a command's) sessions.
    """
    maker = config.create_session_maker()
    if isinstance(maker, ReplicaRoutingSessions):
        return maker.sync_factory
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


def read_from_primary(session: AsyncSession | Session) -> None:
    """Send the rest of ``session``'s work to the primary: what it locks or reads next decides a write.

    A session's bare ``connection()`` names no statement, so replica routing cannot tell it will write.
    """
    session.info.pop(REPLICA_READS_KEY, None)


async def take_turns(session: AsyncSession, lock_id: int) -> None:
    """Wait until no other transaction holds turn ``lock_id``, then hold it until ``session``'s transaction ends.

    PostgreSQL: a transaction-scoped advisory lock, which serializes across processes. SQLite: the
    database's single write lock, taken now (see :func:`_write_lock_now`).
    """
    read_from_primary(session)
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
    read_from_primary(session)
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

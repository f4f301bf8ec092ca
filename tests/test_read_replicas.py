"""Read replicas: a GET reads a replica; what writes, or reads in order to write, uses the primary."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from advanced_alchemy.config import SQLAlchemyAsyncConfig
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.models import Role
from audioverse.app import create_app
from audioverse.catalog.models import Audiobook, Author, CatalogOutbox, Genre, OutboxEntity
from audioverse.catalog.outbox import install_catalog_outbox
from audioverse.config import Settings, SettingsError
from audioverse.db import (
    REPLICA_READS_KEY,
    litestar_sqlalchemy_config,
    lock_for_update,
    migrate_to_head,
    sqlalchemy_config,
    take_turns,
)
from audioverse.jobs import Job, defer
from audioverse.signing import sign_stream_token
from tests.accounts.test_auth_flow import bearer
from tests.catalog.fixtures import account, book_maker
from tests.services import (
    TEST_HASHING,
    TEST_SECRET_KEY,
    free_port,
    fresh_postgres_database,
    service_missing,
    until,
)

Client = AsyncTestClient[Litestar]
POSTGRES_BINARIES = Path("/usr/lib/postgresql")
REPLICA_CATCH_UP_SECONDS = 15


def replicated_settings(data_dir: Path, primary: str, replicas: list[str], **extra: Any) -> Settings:
    """The app on PostgreSQL with ``replicas``; no response cache, so every GET reaches the database."""
    return Settings(
        data_dir=data_dir,
        database_url=primary,
        database_read_replica_urls=replicas,
        secret_key=TEST_SECRET_KEY,
        password_hash_profile=TEST_HASHING,
        seed_demo_on_startup=False,
        auth_rate_limit=1000,
        **{"migrate_on_startup": False, "response_cache_seconds": 0, **extra},
    )


@pytest.fixture(scope="module")
async def two_databases() -> AsyncIterator[tuple[str, str]]:
    """A primary and a second database standing for its replica, both migrated, never replicating.

    A row put in only one of them shows which one a request read.
    """
    async with fresh_postgres_database() as primary, fresh_postgres_database() as replica:
        for url in (primary, replica):
            database = sqlalchemy_config(Settings(database_url=url))
            await migrate_to_head(database)
            await database.get_engine().dispose()
        yield primary, replica


@pytest.fixture
def replicated(two_databases: tuple[str, str], tmp_path: Path) -> Settings:
    primary, replica = two_databases
    return replicated_settings(tmp_path, primary, [replica])


@pytest.fixture
def tag() -> str:
    return f"r{secrets.token_hex(4)}"


@asynccontextmanager
async def routed(settings: Settings) -> AsyncIterator[SQLAlchemyAsyncConfig]:
    """The app's database config for ``settings``, its engines disposed afterwards."""
    database = litestar_sqlalchemy_config(settings)
    try:
        yield database
    finally:
        await database.get_engine().dispose()
        for replica in database.create_session_maker().replica_engines:  # type: ignore[attr-defined]
            await replica.dispose()


def as_a_get(session: AsyncSession) -> AsyncSession:
    session.info[REPLICA_READS_KEY] = True  # what provide_db_session does for a GET
    return session


async def titles(client: Client, tag: str) -> set[str]:
    response = await client.get("/api/audiobooks/", params={"limit": 100})
    assert response.status_code == 200, response.text
    return {book["title"] for book in response.json()["items"] if tag in book["title"]}


async def count_in(url: str, statement: Any) -> int:
    database = sqlalchemy_config(Settings(database_url=url))
    try:
        async with database.get_session() as session:
            return int(await session.scalar(statement) or 0)
    finally:
        await database.get_engine().dispose()


async def run_in(url: str, statement: Any) -> None:
    database = sqlalchemy_config(Settings(database_url=url))
    try:
        async with database.get_session() as session:
            await session.execute(statement)
            await session.commit()
    finally:
        await database.get_engine().dispose()


async def test_a_get_reads_the_replica_while_a_write_reads_and_writes_the_primary(
    replicated: Settings, two_databases: tuple[str, str], tmp_path_factory: pytest.TempPathFactory, tag: str
) -> None:
    primary, replica = two_databases
    await book_maker(msgspec.structs.replace(replicated, database_url=replica), tmp_path_factory)(
        title=f"{tag} shelved on the replica"
    )
    book_id = await book_maker(replicated, tmp_path_factory)(title=f"{tag} not replicated yet")

    async with AsyncTestClient(create_app(replicated)) as client:
        assert await titles(client, tag) == {f"{tag} shelved on the replica"}
        # Signs up, is promoted on the primary, signs in: POSTs, so on the primary throughout.
        curator = await account(client, replicated, Role.CURATOR, verified=True)
        edit = await client.patch(
            f"/api/audiobooks/{book_id}/", headers=bearer(curator), json={"title": f"{tag} edited"}
        )
        # The PATCH found the book that only the primary has, and answers with its own write.
        assert edit.status_code == 200, edit.text
        assert edit.json()["title"] == f"{tag} edited"
        # What a client sees while a replica lags behind: not its write, yet.
        assert await titles(client, tag) == {f"{tag} shelved on the replica"}

    edited = select(func.count()).select_from(Audiobook).where(Audiobook.title == f"{tag} edited")
    assert (await count_in(primary, edited), await count_in(replica, edited)) == (1, 0)


async def test_an_answer_the_shared_cache_may_store_is_read_from_the_primary(
    two_databases: tuple[str, str], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, tag: str
) -> None:
    primary, replica = two_databases
    cached = replicated_settings(tmp_path, primary, [replica], response_cache_seconds=60)
    await book_maker(msgspec.structs.replace(cached, database_url=replica), tmp_path_factory)(title=f"{tag} lagging")
    await book_maker(cached, tmp_path_factory)(title=f"{tag} committed")

    async with AsyncTestClient(create_app(cached)) as client:
        # Stored for everyone, so never from a replica that may not have the latest commit: anonymous or not.
        assert await titles(client, tag) == {f"{tag} committed"}
        listener = await account(client, cached, Role.LISTENER, verified=True)
        signed_in = await client.get("/api/audiobooks/", params={"limit": 100}, headers=bearer(listener))
        assert {book["title"] for book in signed_in.json()["items"] if tag in book["title"]} == {f"{tag} committed"}


async def test_a_streams_book_is_read_from_the_primary_as_it_is_kept_for_later_ranges(
    replicated: Settings, tmp_path_factory: pytest.TempPathFactory, tag: str
) -> None:
    # Only the primary has this book (or the replica has another under its id): a replica read answers
    # 404 or another book's bytes.
    audio = os.urandom(5_000)
    book_id = await book_maker(replicated, tmp_path_factory)(title=f"{tag} streamed", audio=audio)
    token = sign_stream_token(TEST_SECRET_KEY, 1, book_id, datetime.now(UTC) + timedelta(minutes=5))
    async with AsyncTestClient(create_app(replicated)) as client:
        url = f"/api/audiobooks/{book_id}/stream/?token={token}"
        response = await client.get(url, headers={"Range": "bytes=0-99"})
    assert response.status_code == 206, response.text
    assert response.content == audio[:100]


async def test_without_replicas_every_read_is_the_primary(
    two_databases: tuple[str, str], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, tag: str
) -> None:
    primary, replica = two_databases
    settings = replicated_settings(tmp_path, primary, [])
    await book_maker(msgspec.structs.replace(settings, database_url=replica), tmp_path_factory)(title=f"{tag} replica")
    await book_maker(settings, tmp_path_factory)(title=f"{tag} primary")
    assert litestar_sqlalchemy_config(settings).routing_config is None

    async with AsyncTestClient(create_app(settings)) as client:
        assert await titles(client, tag) == {f"{tag} primary"}
        assert (await client.get("/api/ready")).json()["checks"].keys() == {"database", "storage", "search"}


async def test_a_transaction_reads_the_primary_once_it_has_written_or_locked(replicated: Settings, tag: str) -> None:
    genre_named = select(func.count()).select_from(Genre).where(Genre.name == tag)
    async with routed(replicated) as database, database.get_session() as session:
        as_a_get(session)
        assert await session.scalar(genre_named) == 0
        session.add(Genre(name=tag, slug=tag))
        await session.flush()
        assert await session.scalar(genre_named) == 1, "a read after the write went to the replica"
        await session.commit()
        # The next transaction may read the replica again, which never gets the genre here.
        assert await session.scalar(genre_named) == 0
        await session.rollback()

        await take_turns(session, 0x5EED)
        assert await session.scalar(genre_named) == 1, "a read after taking a turn went to the replica"
        await session.rollback()

        as_a_get(session)
        await lock_for_update(session, select(Genre.id).where(Genre.name == tag))
        assert await session.scalar(genre_named) == 1, "a read after a row lock went to the replica"
        await session.rollback()


async def test_a_get_sessions_outbox_rows_and_jobs_land_on_the_primary(
    replicated: Settings, two_databases: tuple[str, str], tag: str
) -> None:
    primary, replica = two_databases
    async with routed(replicated) as database, routed(replicated) as unhooked:
        uninstall = install_catalog_outbox(database)
        try:
            async with database.get_session() as session:
                await as_a_get(session).scalar(select(func.count()).select_from(Author))  # opens the replica
                await defer(session, "test.read_replicas", tag)
                session.add(Author(name=f"{tag} hooked"))
                await session.commit()
            async with unhooked.get_session() as session:  # another app's sessions: not this one's hook
                as_a_get(session).add(Author(name=f"{tag} unhooked"))
                await session.commit()
        finally:
            uninstall()

    job = select(func.count()).select_from(Job).where(Job.task_name == "test.read_replicas")
    assert (await count_in(primary, job), await count_in(replica, job)) == (1, 0)
    await run_in(primary, delete(Job).where(Job.task_name == "test.read_replicas"))  # no task runs it
    for author, rows in ((f"{tag} hooked", 1), (f"{tag} unhooked", 0)):
        author_id = select(Author.id).where(Author.name == author).scalar_subquery()
        outbox = (
            select(func.count())
            .select_from(CatalogOutbox)
            .where(CatalogOutbox.entity == OutboxEntity.AUTHOR, CatalogOutbox.entity_id == author_id)
        )
        assert await count_in(primary, outbox) == rows, author


async def test_readiness_names_a_replica_that_does_not_answer(tmp_path: Path) -> None:
    gone = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    async with fresh_postgres_database() as primary:  # no jobs left by other tests to cut short at shutdown
        settings = replicated_settings(tmp_path, primary, [primary, gone], migrate_on_startup=True)
        async with AsyncTestClient(create_app(settings)) as client:
            response = await client.get("/api/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == checks["database_replica_1"] == "ok"
    assert checks["database_replica_2"] != "ok"


def test_replicas_are_refused_beside_sqlite_or_another_driver(tmp_path: Path) -> None:
    replica = "postgresql+asyncpg://reader:secret@replica.internal/audioverse"
    with pytest.raises(SettingsError, match="AUDIOVERSE_DATABASE_READ_REPLICA_URLS needs a PostgreSQL"):
        create_app(Settings(data_dir=tmp_path, database_read_replica_urls=[replica]))
    mixed = Settings(
        data_dir=tmp_path,
        database_url="postgresql+asyncpg://postgres@127.0.0.1/audioverse",
        secret_key=TEST_SECRET_KEY,
        database_read_replica_urls=["postgresql+psycopg://reader:secret@replica.internal/audioverse"],
    )
    with pytest.raises(SettingsError, match=r"must use the primary's driver, postgresql\+asyncpg") as refused:
        create_app(mixed)
    assert "secret" not in str(refused.value)


# A real streaming replica: a throwaway cluster and its pg_basebackup copy, in hot standby.


def _postgres_bin() -> Path:
    found = sorted(POSTGRES_BINARIES.glob("*/bin/pg_basebackup"))
    if not found:
        service_missing(f"the PostgreSQL server programs (initdb, pg_ctl, pg_basebackup) under {POSTGRES_BINARIES}")
    return found[-1].parent


def _as_postgres(*command: str | Path) -> list[str]:
    # PostgreSQL refuses to run as root, which CI is.
    words = [str(word) for word in command]
    return ["runuser", "-u", "postgres", "--", *words] if os.geteuid() == 0 else words


@contextmanager
def streaming_replica() -> Iterator[tuple[str, str]]:
    """A primary cluster and a streaming hot-standby replica of it, on free ports; their URLs."""
    binaries = _postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="audioverse-replication-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    ports = {"primary": free_port(), "replica": free_port()}
    started: list[Path] = []

    def run(*command: str | Path) -> None:
        subprocess.run(_as_postgres(*command), check=True, capture_output=True, timeout=60)

    def start(name: str) -> None:
        options = f"-p {ports[name]} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(binaries / "pg_ctl", "-D", root / name, "-o", options, "-l", root / f"{name}.log", "-w", "start")
        started.append(root / name)

    try:
        run(binaries / "initdb", "-D", root / "primary", "-A", "trust", "-U", "postgres", "--no-sync")
        start("primary")
        primary = ("-h", "127.0.0.1", "-p", str(ports["primary"]), "-U", "postgres")
        run(binaries / "pg_basebackup", *primary, "-D", root / "replica", "-R", "-X", "stream")
        start("replica")
        primary_url, replica_url = (f"postgresql+asyncpg://postgres@127.0.0.1:{ports[n]}/postgres" for n in ports)
        yield primary_url, replica_url
    finally:
        for data in reversed(started):
            subprocess.run(_as_postgres(binaries / "pg_ctl", "-D", data, "-m", "immediate", "stop"), check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def real_replica() -> Iterator[tuple[str, str]]:
    with streaming_replica() as urls:
        yield urls


async def on_replica(url: str, statement: str) -> Any:
    database = sqlalchemy_config(Settings(database_url=url))
    try:
        async with database.get_engine().connect() as connection:
            return await connection.scalar(text(statement))
    finally:
        await database.get_engine().dispose()


async def test_a_streaming_replica_serves_gets_and_shows_its_lag(
    real_replica: tuple[str, str], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, tag: str
) -> None:
    primary, replica = real_replica
    assert await on_replica(replica, "SELECT pg_is_in_recovery()")
    # Migrations at start run on the primary: the standby would refuse every DDL statement.
    settings = replicated_settings(tmp_path, primary, [replica], migrate_on_startup=True)
    async with AsyncTestClient(create_app(settings)) as client:

        async def replicated_schema() -> bool:
            return bool(await on_replica(replica, "SELECT to_regclass('audiobook') IS NOT NULL"))

        await until(replicated_schema, REPLICA_CATCH_UP_SECONDS)
        curator = await account(client, settings, Role.CURATOR, verified=True)
        await on_replica(replica, "SELECT pg_wal_replay_pause()")
        try:
            book_id = await book_maker(settings, tmp_path_factory)(title=f"{tag} new")
            edit = await client.patch(
                f"/api/audiobooks/{book_id}/", headers=bearer(curator), json={"title": f"{tag} edited"}
            )
            assert edit.status_code == 200, edit.text
            # The standby has replayed neither the book nor the edit: a GET, read there, sees neither.
            assert await titles(client, tag) == set()
        finally:
            await on_replica(replica, "SELECT pg_wal_replay_resume()")

        async def edit_replicated() -> bool:
            return await titles(client, tag) == {f"{tag} edited"}

        await until(edit_replicated, REPLICA_CATCH_UP_SECONDS)
        # A signed-in GET that reads (the profile) works on the read-only standby too.
        assert (await client.get("/api/users/me/", headers=bearer(curator))).status_code == 200

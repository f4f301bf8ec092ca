"""Real services for the tests: PostgreSQL and Redis on loopback, Meilisearch, moto S3, aiosmtpd."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import unquote

import anyio
import asyncpg
import httpx
import msgspec
import pytest
from advanced_alchemy.config import SQLAlchemyAsyncConfig
from aiosmtpd.controller import Controller
from litestar import Litestar
from litestar.stores.base import Store
from litestar.testing import AsyncTestClient
from moto.server import ThreadedMotoServer
from redis.asyncio import Redis
from sqlalchemy import Table, exists, func, inspect, literal, select, text, union_all
from sqlalchemy.exc import DBAPIError
from taskiq.exceptions import TaskiqResultTimeoutError

from audioverse import model_registry  # noqa: F401 - every model module, so the metadata knows every table
from audioverse.app import create_app
from audioverse.config import PasswordHashProfile, Settings
from audioverse.db import Base, ensure_data_dir, migrate_to_head, sqlalchemy_config
from audioverse.jobs import TaskQueue, build_broker

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_ADMIN_URL = os.environ.get("AUDIOVERSE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("AUDIOVERSE_TEST_REDIS", "redis://127.0.0.1:6379/0")
# Delayed retries wait in a database of their own, as the README's production set-up has them.
REDIS_RETRIES_URL = os.environ.get("AUDIOVERSE_TEST_REDIS_RETRIES", "redis://127.0.0.1:6379/1")
MEILISEARCH_BINARY = Path(__file__).parent / "node_modules" / "@gaubee" / "meilisearch-linux-amd64" / "meilisearch"


TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-for-hs256-0123456789"
# Argon2 at production cost is most of an account test's time; tests hash with argon2-cffi's test profile.
TEST_HASHING: PasswordHashProfile = "cheapest"
WORKER_START_TIMEOUT_SECONDS = 90
PING_ANSWER_SECONDS = 20
MAIL_WAIT_SECONDS = 15
TOKEN_IN_LINK = re.compile(r"[?&]token=([A-Za-z0-9_\-%]+)")


def service_missing(what: str) -> NoReturn:
    """In CI a missing service fails the run; on a laptop the test skips and says why."""
    message = f"{what} (start it as the README says, or run .ci/run)"
    if IN_CI:
        pytest.fail(f"CI=true and a required service is missing: {message}", pytrace=False)
    pytest.skip(message)


def moto_s3_settings(endpoint: str, bucket: str) -> dict[str, Any]:
    """The Settings fields that put storage in ``bucket`` on the test's moto S3 server."""
    return {
        "storage_backend": "s3",
        "s3_bucket": bucket,
        "s3_endpoint_url": endpoint,
        "s3_region": "us-east-1",
        "s3_access_key_id": "test",
        "s3_secret_access_key": "test",
    }


def stop_process(process: subprocess.Popen[Any], timeout: float) -> None:
    """Ask ``process`` to stop, and kill it if it has not within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unique_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """Create an empty PostgreSQL database, yield its SQLAlchemy URL, drop it afterwards."""
    name = unique_name("audioverse_test")
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        service_missing(f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable: {exc}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@dataclass
class MeilisearchServer:
    """A real Meilisearch process; ``stop``/``start`` keep its port, data and key, as a server restart does."""

    url: str
    master_key: str
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "meilisearch.log"

    def start(self) -> None:
        # The log is appended to across restarts, so a failed start can show what the server said.
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(MEILISEARCH_BINARY),
                    "--http-addr", f"127.0.0.1:{self.port}",
                    "--db-path", str(self.data_dir / "data.ms"),
                    "--dump-dir", str(self.data_dir / "dumps"),
                    "--snapshot-dir", str(self.data_dir / "snapshots"),
                    # One "=" joined argument: a key may begin with "-", which would read as a flag.
                    f"--master-key={self.master_key}",
                    "--no-analytics",
                    "--env", "development",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
            )  # fmt: skip
        _wait_until_healthy(self.url, self.process, self.log_path)

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process, 10)
        self.process = None

    def kill(self) -> None:
        """End it as a crash or a lost machine would: SIGKILL, no shutdown of its own."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait()
        self.process = None


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"meilisearch exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"meilisearch did not become healthy within {timeout}s")


@contextmanager
def run_meilisearch(data_root: Path, master_key: str | None = None) -> Iterator[MeilisearchServer]:
    """Start the real Meilisearch binary (npm package) on loopback with a temporary data dir.

    ``master_key`` gives several servers the one key a set of search nodes is configured with.
    """
    if not MEILISEARCH_BINARY.exists():
        service_missing(f"Meilisearch binary not installed at {MEILISEARCH_BINARY} (npm ci in tests/services)")
    mode = MEILISEARCH_BINARY.stat().st_mode
    if not mode & stat.S_IXUSR:
        # npm unpacks the binary without the execute bit.
        MEILISEARCH_BINARY.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    port = free_port()
    data_dir = data_root / unique_name("meili")
    data_dir.mkdir(parents=True)
    server = MeilisearchServer(
        url=f"http://127.0.0.1:{port}",
        master_key=master_key or secrets.token_urlsafe(24),
        data_dir=data_dir,
        port=port,
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def run_moto_s3() -> Iterator[str]:
    """A real S3 HTTP endpoint (moto's standalone server) on a free loopback port."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@dataclass
class SmtpServer:
    host: str
    port: int
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


SmtpHandler = TypeVar("SmtpHandler", bound=SmtpServer)


@contextmanager
def run_smtp(handler_type: type[SmtpHandler] = SmtpServer) -> Iterator[SmtpHandler]:  # type: ignore[assignment]
    """A real SMTP server (aiosmtpd) on a free loopback port that keeps what it receives.

    ``handler_type`` may change how it answers (a slow or silent server), keeping what it receives.
    """
    port = free_port()
    handler = handler_type(host="127.0.0.1", port=port)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


def settings_environment(settings: Settings) -> dict[str, str]:
    """The ``AUDIOVERSE_*`` variables that reproduce ``settings`` in another process."""
    environment = {}
    for name, value in msgspec.structs.asdict(settings).items():
        if value is None:
            continue
        if isinstance(value, list):
            text = ",".join(value)
        elif isinstance(value, bool):
            text = str(value).lower()
        else:
            text = str(value)
        environment[f"AUDIOVERSE_{name.upper()}"] = text
    return environment


@contextmanager
def run_audioverse(settings: Settings, *arguments: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``audioverse`` command (a worker, the scheduler) with ``settings``, stopped afterwards."""
    command = [str(Path(sys.executable).parent / "audioverse"), *arguments]
    process = subprocess.Popen(command, env={**os.environ, **settings_environment(settings)})
    try:
        yield process
    finally:
        stop_process(process, WORKER_START_TIMEOUT_SECONDS)


def run_worker(settings: Settings) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """A real `audioverse worker` process that runs the tasks the API enqueues."""
    return run_audioverse(settings, "worker", "--workers", "1")


async def worker_answers(settings: Settings) -> None:
    """Wait for the worker to run a task: tests measure a running system, not a cold start."""
    broker = build_broker(settings)
    await broker.startup()
    try:
        # A fresh worker now and then never runs the first message it is sent (3 of 6 runs of the
        # outbox module needed a second ping; the queue was empty and the worker idle on BRPOP): the
        # list queue delivers at most once, which the durable jobs and their sweep exist for. The wait
        # asks again rather than longer.
        with anyio.fail_after(WORKER_START_TIMEOUT_SECONDS):
            while True:
                ping = await TaskQueue(broker).enqueue("system.ping")
                with contextlib.suppress(TaskiqResultTimeoutError):
                    assert (await ping.wait_result(timeout=PING_ANSWER_SECONDS)).return_value == "pong"
                    return
    finally:
        await broker.shutdown()


def run_scheduler(settings: Settings) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """The real `audioverse scheduler` process: periodic sweeps and delayed retries."""
    return run_audioverse(settings, "scheduler", "--update-interval", "1")


@asynccontextmanager
async def fresh_redis_namespace() -> AsyncIterator[str]:
    """A Redis key namespace of its own; its keys are deleted at the end."""
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except OSError as exc:
        await client.aclose()
        service_missing(f"Redis at {REDIS_URL} is not reachable: {exc}")
    namespace = unique_name("audioverse-test")
    try:
        yield namespace
    finally:
        retries = Redis.from_url(REDIS_RETRIES_URL)
        for database in (client, retries):
            async for key in database.scan_iter(match=f"{namespace}*"):
                await database.delete(key)
        await retries.aclose()
        await client.aclose()


def production_settings(
    data_dir: Path,
    *,
    database_url: str,
    namespace: str,
    meilisearch: MeilisearchServer | None,
    smtp: SmtpServer | None = None,
    migrate_on_startup: bool = True,
) -> Settings:
    """The production profile on the test services: PostgreSQL, Redis, Meilisearch, SMTP when given.

    Without ``meilisearch`` the search engine is the embedded one, for tests that never search: they
    need no search server (the worker process must then be given a ``search_dir`` of its own).
    """
    mail: dict[str, Any] = {"email_backend": "smtp", "smtp_host": smtp.host, "smtp_port": smtp.port} if smtp else {}
    search: dict[str, Any] = (
        {
            "search_backend": "meilisearch",
            "meilisearch_url": meilisearch.url,
            "meilisearch_api_key": meilisearch.master_key,
        }
        if meilisearch
        else {"search_backend": "embedded"}
    )
    return Settings(
        data_dir=data_dir,
        search_index=namespace.replace("-", "_"),
        **search,
        database_url=database_url,
        redis_url=REDIS_URL,
        redis_retries_url=REDIS_RETRIES_URL,
        redis_namespace=namespace,
        task_queue_name=f"{namespace}:tasks",
        secret_key=TEST_SECRET_KEY,
        auth_rate_limit=1000,
        seed_demo_on_startup=False,
        password_hash_profile=TEST_HASHING,
        migrate_on_startup=migrate_on_startup,
        **mail,
    )


async def until(condition: Callable[[], Awaitable[bool]], seconds: float, interval: float = 0.05) -> None:
    """Wait until ``condition()`` holds, checking every ``interval``; fail after ``seconds``."""
    with anyio.fail_after(seconds):
        while True:
            if await condition():
                return
            await anyio.sleep(interval)


@dataclass
class Identity:
    username: str
    email: str
    password: str

    @classmethod
    def new(cls) -> Identity:
        suffix = secrets.token_hex(4)
        return cls(
            username=f"listener_{suffix}",
            email=f"listener_{suffix}@example.com",
            password=f"sturdy battery staple {suffix}",
        )


@dataclass
class Mailbox:
    """Reads delivered emails from the profile's backend, waiting for them to arrive."""

    mail_dir: Path | None = None
    smtp: SmtpServer | None = None

    def messages(self) -> list[Message]:
        if self.smtp is not None:
            return list(self.smtp.messages)
        if self.mail_dir is None or not self.mail_dir.exists():
            return []
        return [message_from_bytes(path.read_bytes()) for path in sorted(self.mail_dir.glob("*.eml"))]

    def to(self, address: str) -> list[Message]:
        return [message for message in self.messages() if message["To"] == address]

    async def wait_for(self, address: str, subject: str, *, count: int = 1) -> Message:
        """The ``count``-th message to ``address`` whose subject contains ``subject``."""
        with anyio.fail_after(MAIL_WAIT_SECONDS):
            while True:
                matching = [message for message in self.to(address) if subject in message["Subject"]]
                if len(matching) >= count:
                    return matching[count - 1]
                await anyio.sleep(0.05)


def email_text(message: Message) -> str:
    part = message.get_body(("plain",)) if isinstance(message, EmailMessage) else None
    source = part if part is not None else message
    if source.is_multipart():
        source = next(p for p in source.walk() if p.get_content_type() == "text/plain")
    payload = source.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def token_from(message: Message) -> str:
    match = TOKEN_IN_LINK.search(email_text(message))
    assert match, "the email carries no token link"
    return unquote(match.group(1))


WIPE_ATTEMPTS = 5
WIPE_LOCK_TIMEOUT = "2s"
_DEPLOYED_DATABASES: dict[str, SQLAlchemyAsyncConfig] = {}
"""The running deployments' databases by URL: fixtures share their engine rather than build one per row."""


@asynccontextmanager
async def database_for(settings: Settings) -> AsyncIterator[SQLAlchemyAsyncConfig]:
    """The running deployment's database config for ``settings``, or one of its own disposed afterwards."""
    shared = _DEPLOYED_DATABASES.get(settings.resolved_database_url)
    if shared is not None:
        yield shared
        return
    database = sqlalchemy_config(settings)
    try:
        yield database
    finally:
        await database.get_engine().dispose()


@dataclass
class Deployment:
    """One running deployment for the session: settings, app, a client, where its mail goes, one engine."""

    settings: Settings
    app: Litestar
    client: AsyncTestClient[Litestar]
    mailbox: Mailbox
    database: SQLAlchemyAsyncConfig
    tables: list[Table]
    worker: subprocess.Popen[bytes] | None = None

    async def wipe(self) -> None:
        """Delete every row the last test left, children before parents, and the app's search store.

        The store holds recommendation lists by user and book id and reindex status. A row a
        background task writes after the wipe stays for the next one.
        """
        store: Store = self.app.state.search_store
        self.client.blocking_portal.call(store.delete_all)
        for attempt in range(1, WIPE_ATTEMPTS + 1):
            try:
                await self._delete_rows(await self._tables_with_rows())
                return
            except DBAPIError:  # a lock held past the timeout, or a child row a background task just wrote
                if attempt == WIPE_ATTEMPTS:
                    raise
                await anyio.sleep(0.2 * attempt)

    async def _tables_with_rows(self) -> list[Table]:
        """The tables holding any row, children first, found in one round trip (a test touches few)."""
        found = union_all(
            *(select(literal(table.name)).where(exists(select(1).select_from(table))) for table in self.tables)
        )
        async with self.database.get_engine().connect() as connection:
            names = set(await connection.scalars(found))
        return [table for table in self.tables if table.name in names]

    async def _delete_rows(self, tables: list[Table]) -> None:
        """Empty ``tables``: on PostgreSQL each in a transaction of its own, on SQLite in one.

        On PostgreSQL the wipe never holds one table's row locks while it waits on another's: a task
        that holds a job row while it updates a book would otherwise wait on the wipe forever, as the
        wipe waits on it. Its commits skip the WAL flush (no test needs them to survive a crash); what
        is left of a wipe's time is mostly waiting for the test's own jobs, whose rows they lock while
        they run, which keeps their writes out of the next test. SQLite locks the whole database for any
        write, so one transaction is as safe there.
        """
        engine = self.database.get_engine()
        if engine.dialect.name != "postgresql":
            async with engine.begin() as connection:
                for table in tables:
                    await connection.execute(table.delete())
            return
        for table in tables:
            async with engine.begin() as connection:
                await connection.execute(text(f"SET LOCAL lock_timeout = '{WIPE_LOCK_TIMEOUT}'"))
                await connection.execute(text("SET LOCAL synchronous_commit = off"))
                await connection.execute(table.delete())

    async def row_counts(self) -> dict[str, int]:
        """How many rows each table holds, for the tables that hold any."""
        counts = {}
        async with self.database.get_engine().connect() as connection:
            for table in self.tables:
                count = await connection.scalar(select(func.count()).select_from(table))
                if count:
                    counts[table.name] = int(count)
        return counts


async def _service_tables(database: SQLAlchemyAsyncConfig) -> list[Table]:
    """The service's tables that the database has, children first (the order deletes must take)."""
    async with database.get_engine().connect() as connection:
        present = set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    return [table for table in reversed(Base.metadata.sorted_tables) if table.name in present]


@asynccontextmanager
async def deployed(settings: Settings, mailbox: Mailbox, *, worker: bool = False) -> AsyncIterator[Deployment]:
    """Run ``settings``' app (and, for production, a real worker process) for as long as the context lasts.

    The worker gets an embedded search index of its own when the app has one: tantivy allows one
    process per index, and tests without Meilisearch never search what the worker drains. Settings
    that do not migrate on startup are migrated here, once: every app a test builds from them is
    then spared the migration run.
    """
    database = sqlalchemy_config(settings)
    if not settings.migrate_on_startup:
        ensure_data_dir(settings)
        await migrate_to_head(database)
    with contextlib.ExitStack() as processes:
        process = None
        if worker:
            worker_settings = settings
            if settings.search_backend == "embedded":
                worker_settings = msgspec.structs.replace(settings, search_dir=settings.data_dir / "worker-search")
            process = processes.enter_context(run_worker(worker_settings))
            await worker_answers(settings)
        app = create_app(settings)
        try:
            async with AsyncTestClient(app=app) as client:
                deployment = Deployment(
                    settings=settings,
                    app=app,
                    client=client,
                    mailbox=mailbox,
                    database=database,
                    tables=await _service_tables(database),
                    worker=process,
                )
                left = await deployment.row_counts()
                assert not left, f"a fresh deployment holds rows the per-test wipe would delete: {left}"
                _DEPLOYED_DATABASES[settings.resolved_database_url] = database
                yield deployment
        finally:
            _DEPLOYED_DATABASES.pop(settings.resolved_database_url, None)
            await database.get_engine().dispose()

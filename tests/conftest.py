"""Shared fixtures: the app on both profiles (SQLite + memory, PostgreSQL + Redis) and real services."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from advanced_alchemy.config import SQLAlchemyAsyncConfig
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audioverse.config import Settings
from tests.services import (
    TEST_HASHING,
    Deployment,
    Identity,
    Mailbox,
    MeilisearchServer,
    SmtpServer,
    deployed,
    fresh_postgres_database,
    fresh_redis_namespace,
    production_settings,
    run_meilisearch,
    run_moto_s3,
    run_smtp,
)

PROFILES = ["embedded", "production"]
pytest_plugins = ["tests.accounts.fixtures", "tests.catalog.fixtures"]


@pytest.fixture(scope="session")
async def postgres_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database shared by this test session, dropped at the end."""
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
async def redis_namespace() -> AsyncIterator[str]:
    """A Redis key namespace for this test session; its keys are deleted at the end."""
    async with fresh_redis_namespace() as namespace:
        yield namespace


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audioverse-data")


@pytest.fixture(scope="session", params=PROFILES)
def profile(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def session_smtp() -> Iterator[SmtpServer]:
    with run_smtp() as server:
        yield server


@pytest.fixture(scope="session")
async def embedded_deployment(data_root: Path) -> AsyncIterator[Deployment]:
    """The embedded profile: SQLite, in-process tasks and search, ``.eml`` files for mail."""
    settings = Settings(
        data_dir=data_root / "embedded",
        auth_rate_limit=1000,
        seed_demo_on_startup=False,
        password_hash_profile=TEST_HASHING,
        migrate_on_startup=False,
    )
    async with deployed(settings, Mailbox(mail_dir=settings.mail_dir)) as deployment:
        yield deployment


@pytest.fixture(scope="session")
async def production_deployment(
    data_root: Path, postgres_database: str, redis_namespace: str, session_smtp: SmtpServer
) -> AsyncIterator[Deployment]:
    """The production profile for tests that never search: no Meilisearch, the embedded engine instead."""
    settings = production_settings(
        data_root / "production",
        database_url=postgres_database,
        namespace=redis_namespace,
        meilisearch=None,
        smtp=session_smtp,
        migrate_on_startup=False,
    )
    async with deployed(settings, Mailbox(smtp=session_smtp), worker=True) as deployment:
        yield deployment


@pytest.fixture(scope="session")
async def production_search_deployment(
    data_root: Path, meilisearch: MeilisearchServer, session_smtp: SmtpServer
) -> AsyncIterator[Deployment]:
    """The production profile with a real Meilisearch, for tests marked ``search``.

    A database and Redis namespace of its own: its worker drains its outbox into its engine only.
    """
    async with fresh_postgres_database() as database_url, fresh_redis_namespace() as namespace:
        settings = production_settings(
            data_root / "production-search",
            database_url=database_url,
            namespace=namespace,
            meilisearch=meilisearch,
            smtp=session_smtp,
            migrate_on_startup=False,
        )
        async with deployed(settings, Mailbox(smtp=session_smtp), worker=True) as deployment:
            yield deployment


@pytest.fixture
def deployment(profile: str, request: pytest.FixtureRequest) -> Deployment:
    """The profile's deployment; in production, the one with Meilisearch only when the test is marked ``search``."""
    if profile == "embedded":
        name = "embedded_deployment"
    elif request.node.get_closest_marker("search") is not None:
        name = "production_search_deployment"
    else:
        name = "production_deployment"
    chosen: Deployment = request.getfixturevalue(name)
    return chosen


@pytest.fixture
async def clean_deployment(deployment: Deployment) -> AsyncIterator[Deployment]:
    """The deployment, its database emptied of the rows the test wrote once the test ends."""
    yield deployment
    await deployment.wipe()


@pytest.fixture
def settings(clean_deployment: Deployment) -> Settings:
    """Settings of the profile under test; each deployment keeps its own data directory."""
    return clean_deployment.settings


@pytest.fixture
def database(clean_deployment: Deployment) -> SQLAlchemyAsyncConfig:
    """The deployment's database, one engine for the session: fixtures write rows through it."""
    return clean_deployment.database


@pytest.fixture
def background_worker(clean_deployment: Deployment) -> subprocess.Popen[bytes] | None:
    """In production the real `audioverse worker` process that runs the tasks the API enqueues."""
    return clean_deployment.worker


@pytest.fixture
def mailbox(clean_deployment: Deployment) -> Mailbox:
    """Where the profile's emails arrive: `.eml` files (embedded) or the SMTP server (production)."""
    return clean_deployment.mailbox


@pytest.fixture
def app(clean_deployment: Deployment) -> Litestar:
    """One app per deployment for the session, as one deployment serves every client."""
    return clean_deployment.app


@pytest.fixture
def client(clean_deployment: Deployment) -> AsyncTestClient[Litestar]:
    return clean_deployment.client


@pytest.fixture(scope="session")
def meilisearch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeilisearchServer]:
    with run_meilisearch(tmp_path_factory.mktemp("meilisearch")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with run_moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with run_smtp() as server:
        yield server


@pytest.fixture
def identity() -> Identity:
    """A fresh, unique account identity for a test."""
    return Identity.new()

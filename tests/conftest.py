"""Shared fixtures: the app on both profiles (SQLite + memory, PostgreSQL + Redis) and real services."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audioverse.app import create_app
from audioverse.config import Settings
from tests.services import (
    TEST_HASHING,
    Identity,
    Mailbox,
    MeilisearchServer,
    SmtpServer,
    fresh_postgres_database,
    fresh_redis_namespace,
    production_settings,
    run_meilisearch,
    run_moto_s3,
    run_smtp,
    run_worker,
    worker_answers,
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
def settings(profile: str, data_root: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings of the profile under test; each profile keeps its own data directory."""
    data_dir = data_root / profile
    if profile == "embedded":
        return Settings(
            data_dir=data_dir, auth_rate_limit=1000, seed_demo_on_startup=False, password_hash_profile=TEST_HASHING
        )
    database_url: str = request.getfixturevalue("postgres_database")
    namespace: str = request.getfixturevalue("redis_namespace")
    smtp: SmtpServer = request.getfixturevalue("session_smtp")
    meilisearch: MeilisearchServer = request.getfixturevalue("meilisearch")
    return production_settings(
        data_dir, database_url=database_url, namespace=namespace, meilisearch=meilisearch, smtp=smtp
    )


@pytest.fixture(scope="session")
async def background_worker(settings: Settings, profile: str) -> AsyncIterator[subprocess.Popen[bytes] | None]:
    """In production a real `audioverse worker` process runs the tasks the API enqueues, once it answers."""
    if profile == "embedded":
        yield None
        return
    with run_worker(settings) as process:
        await worker_answers(settings)
        yield process


@pytest.fixture(scope="session")
def mailbox(settings: Settings, profile: str, request: pytest.FixtureRequest) -> Mailbox:
    """Where the profile's emails arrive: `.eml` files (embedded) or the SMTP server (production)."""
    if profile == "embedded":
        return Mailbox(mail_dir=settings.mail_dir)
    smtp: SmtpServer = request.getfixturevalue("session_smtp")
    return Mailbox(smtp=smtp)


@pytest.fixture(scope="session")
def app(settings: Settings, background_worker: subprocess.Popen[bytes] | None) -> Litestar:
    """One app per profile for the session, as one deployment serves every client."""
    return create_app(settings)


@pytest.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


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

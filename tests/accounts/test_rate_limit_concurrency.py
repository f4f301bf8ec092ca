"""Parallel login attempts cannot slip past the rate limits: exactly ``limit`` reach the password check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest
from litestar import Litestar

from audioverse.app import create_app
from audioverse.config import Settings
from tests.accounts.test_auth_flow import register
from tests.services import Identity

LIMIT = 10
PARALLEL = 50

LimitedApp = Callable[[int], AbstractAsyncContextManager[Litestar]]


@pytest.fixture
def limited_app(settings: Settings, tmp_path: Path) -> LimitedApp:
    """A started app allowing ``LIMIT`` auth attempts per key in a window of the given seconds."""

    @asynccontextmanager
    async def running(window_seconds: int) -> AsyncIterator[Litestar]:
        limited = msgspec.structs.replace(
            settings,
            auth_rate_limit=LIMIT,
            auth_rate_window_seconds=window_seconds,
            redis_namespace=f"{settings.redis_namespace}-limits-{tmp_path.name}",
        )
        app = create_app(limited)
        # Served on this test's event loop (AsyncTestClient would send the requests one by one).
        async with app.lifespan():
            yield app

    return running


def client_at(app: Litestar, address: str) -> httpx.AsyncClient:
    """A client whose requests come from ``address``, as the per-client limit sees them."""
    transport = httpx.ASGITransport(app=app, client=(address, 50000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def wrong_password(client: httpx.AsyncClient, login_name: str) -> httpx.Response:
    return await client.post("/api/auth/login/", json={"username_or_email": login_name, "password": "not the password"})


def assert_exactly_limit_evaluated(responses: list[httpx.Response], window_seconds: int) -> None:
    statuses = [response.status_code for response in responses]
    assert statuses.count(401) == LIMIT, statuses
    assert statuses.count(429) == PARALLEL - LIMIT, statuses
    for response in responses:
        if response.status_code == 429:
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["status"] == 429
            assert 1 <= int(response.headers["retry-after"]) <= window_seconds


async def test_parallel_wrong_passwords_against_one_account(limited_app: LimitedApp, identity: Identity) -> None:
    async with limited_app(60) as app:
        async with client_at(app, "198.51.100.1") as owner:
            await register(owner, identity)  # type: ignore[arg-type]
        # Each attempt from its own address, so only the per-account limit stands in the way.
        clients = [client_at(app, f"203.0.113.{n}") for n in range(PARALLEL)]
        try:
            responses = await asyncio.gather(*(wrong_password(client, identity.username) for client in clients))
        finally:
            await asyncio.gather(*(client.aclose() for client in clients))
    assert_exactly_limit_evaluated(responses, 60)


async def test_parallel_wrong_passwords_from_one_client(limited_app: LimitedApp) -> None:
    async with limited_app(60) as app, client_at(app, "203.0.113.200") as client:
        # Each attempt names another account, so only the per-client limit stands in the way.
        accounts = [Identity.new().username for _ in range(PARALLEL)]
        responses = await asyncio.gather(*(wrong_password(client, name) for name in accounts))
    assert_exactly_limit_evaluated(responses, 60)


async def test_attempts_are_admitted_again_once_the_window_ends(limited_app: LimitedApp, identity: Identity) -> None:
    async with limited_app(3) as app, client_at(app, "203.0.113.201") as client:
        responses = await asyncio.gather(*(wrong_password(client, identity.username) for _ in range(PARALLEL)))
        assert_exactly_limit_evaluated(responses, 3)
        # Retry-After was counted from before the ten password checks ran, so waiting it out from now is ample.
        retry_after = max(int(response.headers.get("retry-after", 0)) for response in responses)
        await asyncio.sleep(retry_after + 0.2)
        assert (await wrong_password(client, identity.username)).status_code == 401

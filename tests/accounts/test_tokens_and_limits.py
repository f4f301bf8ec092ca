"""Forged and expired tokens are refused; rate limits trip and recover; the secret key rules hold."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import jwt
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audioverse.app import create_app
from audioverse.config import Settings, SettingsError
from audioverse.signing import resolve_secret_key
from tests.accounts.test_auth_flow import login, register
from tests.services import Identity, Mailbox, token_from

Client = AsyncTestClient[Litestar]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
async def signed_in(client: Client, identity: Identity) -> dict[str, object]:
    await register(client, identity)
    return await login(client, identity.username, identity.password)


async def test_forged_access_tokens_are_rejected(
    client: Client, settings: Settings, signed_in: dict[str, object]
) -> None:
    genuine = str(signed_in["access_token"])
    header, payload, signature = genuine.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    now = datetime.now(UTC)
    secret = resolve_secret_key(settings)
    forged = {
        "tampered payload": f"{header}.{_b64({**claims, 'sub': '999999'})}.{signature}",
        "tampered signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "wrong key": jwt.encode(claims, "another-secret-key-of-sufficient-length-1234", algorithm="HS256"),
        "expired": jwt.encode(
            {**claims, "exp": int((now - timedelta(minutes=1)).timestamp())}, secret, algorithm="HS256"
        ),
        "garbage": "not.a.jwt",
    }
    for name, token in forged.items():
        response = await client.get("/api/users/me/", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
        assert response.headers["content-type"].startswith("application/problem+json"), name
    assert (await client.get("/api/users/me/", headers={"Authorization": f"Bearer {genuine}"})).status_code == 200


async def test_missing_token_is_401(client: Client) -> None:
    response = await client.get("/api/users/me/")
    assert response.status_code == 401
    assert response.json()["status"] == 401


@pytest.fixture
async def short_lived_client(settings: Settings, tmp_path: Path) -> AsyncIterator[Client]:
    """An app whose email links expire at once and whose auth routes allow 3 attempts per 2 s."""
    quick = msgspec.structs.replace(
        settings,
        email_verification_hours=0,
        password_reset_minutes=0,
        auth_rate_limit=3,
        auth_rate_window_seconds=2,
        redis_namespace=f"{settings.redis_namespace}-quick-{tmp_path.name}",
    )
    async with AsyncTestClient(create_app(quick)) as client:
        yield client


async def test_expired_email_links_are_refused(
    short_lived_client: Client, identity: Identity, mailbox: Mailbox
) -> None:
    await register(short_lived_client, identity)
    message = await mailbox.wait_for(identity.email, "Confirm your email")
    response = await short_lived_client.post("/api/auth/verify-email/", json={"token": token_from(message)})
    assert response.status_code == 422
    assert "expired" in response.json()["detail"]


async def test_login_rate_limit_trips_and_recovers(short_lived_client: Client, identity: Identity) -> None:
    body = {"username_or_email": identity.username, "password": "wrong password here"}
    statuses = [(await short_lived_client.post("/api/auth/login/", json=body)).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    limited = await short_lived_client.post("/api/auth/login/", json=body)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 2
    assert limited.headers["content-type"].startswith("application/problem+json")
    await anyio.sleep(2.2)
    assert (await short_lived_client.post("/api/auth/login/", json=body)).status_code == 401


async def test_reset_requests_are_rate_limited_per_account(short_lived_client: Client, identity: Identity) -> None:
    for _ in range(3):
        response = await short_lived_client.post("/api/auth/password-reset/", json={"email": identity.email})
        assert response.status_code == 202
    limited = await short_lived_client.post("/api/auth/password-reset/", json={"email": identity.email})
    assert limited.status_code == 429
    assert "Retry-After" in limited.headers


def test_a_server_database_requires_a_secret_key(tmp_path: Path) -> None:
    production = Settings(data_dir=tmp_path, database_url="postgresql+asyncpg://db/audioverse")
    with pytest.raises(SettingsError, match="AUDIOVERSE_SECRET_KEY is required"):
        create_app(production)
    with pytest.raises(SettingsError, match="at least 32"):
        resolve_secret_key(msgspec.structs.replace(production, secret_key="short"))


def test_the_embedded_key_is_generated_once_and_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = resolve_secret_key(settings)
    assert len(first) >= 32
    assert resolve_secret_key(settings) == first
    mode = (tmp_path / "secret_key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600

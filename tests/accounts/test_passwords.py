"""Password hashing: strong Argon2id by default, a cheap profile for tests, hashes that outlive a change."""

from __future__ import annotations

import argon2
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from audioverse.accounts.models import User
from audioverse.accounts.passwords import hash_password, verify_password
from audioverse.config import Settings, SettingsError
from audioverse.db import sqlalchemy_config
from tests.accounts.test_auth_flow import login, register
from tests.services import TEST_HASHING, Identity


async def test_the_default_profile_hashes_with_argon2id_at_production_strength() -> None:
    profile = Settings().password_hash_profile
    parameters = argon2.extract_parameters(await hash_password("correct horse battery staple", profile))
    assert parameters.type is argon2.Type.ID
    assert parameters.time_cost >= 3
    assert parameters.memory_cost >= 64 * 1024  # KiB
    assert parameters.parallelism >= 4
    assert parameters.hash_len >= 32
    assert parameters.salt_len >= 16


async def test_hashes_made_under_another_profile_still_verify() -> None:
    strong = await hash_password("correct horse battery staple")
    cheap = await hash_password("correct horse battery staple", "cheapest")
    assert argon2.extract_parameters(cheap).memory_cost < argon2.extract_parameters(strong).memory_cost
    assert await verify_password(strong, "correct horse battery staple", "cheapest")
    assert await verify_password(cheap, "correct horse battery staple")
    assert not await verify_password(strong, "wrong horse battery staple", "cheapest")
    assert not await verify_password(None, "correct horse battery staple", "cheapest")


def test_the_profile_comes_from_the_environment() -> None:
    assert Settings.from_env({"AUDIOVERSE_PASSWORD_HASH_PROFILE": "cheapest"}).password_hash_profile == "cheapest"
    with pytest.raises(SettingsError, match="password_hash_profile"):
        Settings.from_env({"AUDIOVERSE_PASSWORD_HASH_PROFILE": "md5"})


async def test_registration_stores_a_hash_of_the_configured_profile(
    client: AsyncTestClient[Litestar], settings: Settings, identity: Identity
) -> None:
    assert settings.password_hash_profile == TEST_HASHING
    await register(client, identity)
    assert (await login(client, identity.username, identity.password))["access_token"]
    database = sqlalchemy_config(settings)
    async with database.get_session() as session:
        stored = await session.scalar(select(User.password_hash).where(User.username == identity.username))
    await database.get_engine().dispose()
    assert stored is not None
    assert argon2.extract_parameters(stored).memory_cost == argon2.profiles.CHEAPEST.memory_cost

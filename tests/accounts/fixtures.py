"""Account fixtures: a signed-in listener and an admin created the way `users create-admin` does."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audioverse.accounts.services import UserService
from audioverse.config import Settings
from tests.accounts.test_auth_flow import login, register
from tests.services import Identity, database_for


@pytest.fixture
async def admin_tokens(client: AsyncTestClient[Litestar], settings: Settings) -> dict[str, Any]:
    identity = Identity.new()
    async with database_for(settings) as database, database.get_session() as session:
        await UserService(session=session).create_admin(identity.email, identity.username, identity.password, settings)
        await session.commit()
    return await login(client, identity.username, identity.password)


@pytest.fixture
async def listener_tokens(client: AsyncTestClient[Litestar], identity: Identity) -> dict[str, Any]:
    await register(client, identity)
    return await login(client, identity.username, identity.password)

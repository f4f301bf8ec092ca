"""What the admin's pages work with: the app's resources, the signed-in curator, and a committing session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from advanced_alchemy.config import SQLAlchemyAsyncConfig
from litestar.stores.base import Store
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from taskiq import AsyncBroker

from audioverse.accounts.models import User
from audioverse.catalog.services import ZeroResultTally
from audioverse.config import Settings
from audioverse.db import commit_and_settle
from audioverse.ratelimit import RateLimiter
from audioverse.storage import Storage
from audioverse.types import MAX_ID
from search import SearchEngine


@dataclass(frozen=True)
class AdminResources:
    """The app's own objects, handed to the admin when the app is built (it serves one app's database)."""

    settings: Settings
    secret_key: str
    database: SQLAlchemyAsyncConfig
    search: SearchEngine
    search_store: Store
    broker: AsyncBroker
    zero_result_tally: ZeroResultTally
    login_rate_limiter: RateLimiter
    storage: Storage


RESOURCES_STATE_KEY = "audioverse_admin"
USER_STATE_KEY = "audioverse_admin_user"


def resources(request: Request) -> AdminResources:
    """The resources of the app this admin belongs to, kept on the admin's own Starlette app."""
    found: AdminResources = getattr(request.app.state, RESOURCES_STATE_KEY)
    return found


def signed_in(request: Request) -> User:
    """The curator or admin the request's session belongs to (set by the authentication backend)."""
    user: User = getattr(request.state, USER_STATE_KEY)
    return user


@asynccontextmanager
async def committing_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session of the app's database, committed when the block ends without error.

    It comes from the same session factory as the API's request sessions, so the catalog outbox, the
    deferred jobs and the response-cache bump happen on commit exactly as after an API write.
    """
    async with resources(request).database.get_session() as session:
        yield session
        await commit_and_settle(session)


def is_row_id(text: str) -> bool:
    """``text`` is an id a row can have (ASCII digits, 1 to 2**63 - 1); anything else in an address names no row."""
    return text.isascii() and text.isdigit() and len(text) <= len(str(MAX_ID)) and 1 <= int(text) <= MAX_ID

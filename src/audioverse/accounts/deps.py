"""Providers of the accounts services, each built on the request's committing ``db_session``."""

from __future__ import annotations

from advanced_alchemy.extensions.litestar.providers import create_service_provider
from litestar.di import Provide

from audioverse.accounts.services import UserService

provide_users = create_service_provider(UserService)

USERS_DEPENDENCY = {"users": Provide(provide_users)}

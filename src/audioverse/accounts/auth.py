"""Authentication (Litestar's JWT backend) and the reusable guards later routes use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig as LitestarSQLAlchemyConfig
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.security.jwt import JWTAuth, Token
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.models import Role, User
from audioverse.errors import Forbidden

# Routes anyone may call; everything else needs a bearer token.
PUBLIC_PATHS = ["/api/health", "/api/ready", "/api/docs", "/api/schema"]
PUBLIC = {"exclude_from_auth": True}
TOKEN_ALGORITHM = "HS256"  # noqa: S105 - an algorithm name, not a secret
USER_CHECKED_BY_HANDLER_KEY = "user_checked_by_handler"
USER_CHECKED_BY_HANDLER = {USER_CHECKED_BY_HANDLER_KEY: True}
"""Route opt: the token is verified as usual, but its account is checked by the handler (``request.user`` is a
:class:`TokenHolder`), so a route that batches its writes can batch that read too."""


class TokenHolder(NamedTuple):
    """Who a verified token names, before their account is read: the user is confirmed by :func:`token_outlived`."""

    id: int
    issued_at: datetime


def token_outlived(issued_at: datetime, credentials_changed_at: datetime) -> bool:
    """Whether the user's credentials (password, role) changed after the token was issued, which ends it."""
    return issued_at < credentials_changed_at.replace(microsecond=0)


def build_jwt_auth(secret_key: str, access_minutes: int) -> JWTAuth[User]:
    """Bearer JWT authentication whose tokens die when the user's credentials change."""

    async def retrieve_user(token: Token, connection: ASGIConnection[Any, Any, Any, Any]) -> User | TokenHolder | None:
        if connection.route_handler.opt.get(USER_CHECKED_BY_HANDLER_KEY):
            user_id = token_user_id(token)
            return None if user_id is None else TokenHolder(user_id, token.iat)
        database: LitestarSQLAlchemyConfig = connection.app.state.database
        return await user_for_token(token, database.provide_session(connection.app.state, connection.scope))

    return JWTAuth[User](
        retrieve_user_handler=retrieve_user,
        token_secret=secret_key,
        algorithm=TOKEN_ALGORITHM,
        default_token_expiration=timedelta(minutes=access_minutes),
        exclude=PUBLIC_PATHS,
        require_claims=["exp", "iat", "sub"],
        description="Access token from POST /api/auth/login/ (expires after a few minutes; refresh it).",
    )


def access_token(secret_key: str, access_minutes: int, user: User) -> str:
    """A bearer token for ``user`` that :func:`build_jwt_auth`'s backend accepts (it carries the role)."""
    token = Token(
        sub=str(user.id),
        exp=datetime.now(UTC) + timedelta(minutes=access_minutes),
        extras={"role": user.role.value},
    )
    return token.encode(secret=secret_key, algorithm=TOKEN_ALGORITHM)


async def user_for_token(token: Token, session: AsyncSession) -> User | None:
    """The token's user, unless their credentials changed after it was issued."""
    user_id = token_user_id(token)
    user = None if user_id is None else await session.get(User, user_id)
    if user is None or token_outlived(token.iat, user.credentials_changed_at):
        return None
    return user


def token_user_id(token: Token) -> int | None:
    try:
        return int(token.sub)
    except ValueError:
        return None


def _bearer_credentials(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    scheme, _, encoded = connection.headers.get("authorization", "").partition(" ")
    return encoded if scheme.lower() == "bearer" else ""


def has_bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """The request sends ``Authorization: Bearer …`` (valid or not)."""
    return bool(_bearer_credentials(connection))


async def bearer_user(connection: ASGIConnection[Any, Any, Any, Any], session: AsyncSession) -> User | None:
    """The user of a valid ``Authorization: Bearer`` header, for routes that also accept other proofs."""
    if not (encoded := _bearer_credentials(connection)):
        return None
    jwt_auth: JWTAuth[User] = connection.app.state.jwt_auth
    try:
        token = jwt_auth.token_cls.decode(
            encoded, secret=jwt_auth.token_secret, algorithm=jwt_auth.algorithm, require_claims=["exp", "iat", "sub"]
        )
    except NotAuthorizedException:
        return None
    return await user_for_token(token, session)


def current_user(connection: ASGIConnection[Any, User, Any, Any]) -> User:
    user: User = connection.user
    return user


def is_preflight(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """An OPTIONS request: the auth backend lets it through without a user, and it reveals nothing."""
    return connection.scope.get("method") == "OPTIONS"


def requires_verified(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: the caller has confirmed their email address."""
    if is_preflight(connection):
        return
    if not current_user(connection).is_verified:
        raise Forbidden("Confirm your email address first (POST /api/auth/resend-verification/).")


def requires_curator(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: the caller is a curator or an admin."""
    if is_preflight(connection):
        return
    if not current_user(connection).is_curator:
        raise Forbidden("Only curators may do this.")


def requires_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: the caller is an admin."""
    if is_preflight(connection):
        return
    if current_user(connection).role != Role.ADMIN:
        raise Forbidden("Only admins may do this.")


def ensure_owner_or_curator(user: User, owner_id: int | None, what: str = "this") -> None:
    """Refuse unless ``user`` owns the resource or curates the catalog."""
    if user.id != owner_id and not user.is_curator:
        raise Forbidden(f"Only its owner or a curator may change {what}.")

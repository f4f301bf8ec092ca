"""Sign-in to the admin with our accounts (curators and admins only) and CSRF tokens for its forms.

The session is Starlette's signed cookie (the app's secret key): HttpOnly, SameSite=Strict, Secure when
the public base URL is https, scoped to ``/admin``. It holds the account id, when the curator signed in
and the CSRF token. Every request reloads the account: a changed role or password (which moves
``credentials_changed_at``) ends the session, as it ends the account's access tokens.

CSRF: a synchronizer token kept in that session. Every request that is not GET/HEAD/OPTIONS must
carry it in the ``csrftoken`` form field or the ``X-CSRFToken`` header, or it is refused before
anything reads or writes (the login form included). The check runs in the backend's hooks, which
sqladmin calls with the very request object its endpoint reads the form from, so the form is parsed once.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from sqladmin.authentication import AuthenticationBackend
from sqladmin.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from audioverse.accounts.models import Role, User
from audioverse.accounts.passwords import verify_password
from audioverse.accounts.services import UserService
from audioverse.errors import TooManyRequests
from audioverse.web.admin.context import USER_STATE_KEY, AdminResources, resources

SESSION_COOKIE = "audioverse_admin"
LOGIN_TEMPLATE = "sqladmin/login.html"
SESSION_SECONDS = 8 * 3600
CSRF_FIELD = "csrftoken"
CSRF_HEADER = "x-csrftoken"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ADMIN_ROLES = frozenset({Role.CURATOR, Role.ADMIN})

INVALID_CREDENTIALS = "Wrong username or password."
NOT_A_CURATOR = "This account may not use the admin: it is for curators and admins."
CSRF_REFUSED = "The form's security token is missing or stale: reload the page and try again."


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use; forms and scripts send it back."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def csrf_passes(request: Request) -> bool:
    """Whether a state-changing request carries the session's token (safe methods always pass)."""
    if request.method in SAFE_METHODS:
        return True
    expected = request.session.get("csrf")
    if not isinstance(expected, str):
        return False
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            field = (await request.form()).get(CSRF_FIELD)
            sent = field if isinstance(field, str) else None
    return sent is not None and secrets.compare_digest(sent, expected)


def csrf_refused() -> Response:
    return PlainTextResponse(CSRF_REFUSED, status_code=HTTPStatus.FORBIDDEN)


class AdminAuth(AuthenticationBackend):
    """sqladmin's authentication hooks, answered by our accounts."""

    def __init__(self, admin_resources: AdminResources) -> None:
        super().__init__(
            secret_key=admin_resources.secret_key,
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_SECONDS,
            path="/admin",
            same_site="strict",
            https_only=admin_resources.settings.public_base_url.startswith("https://"),
        )
        self.templates: Jinja2Templates | None = None
        """The admin's templates, for the login page's refusals; set once the admin exists."""

    async def refusal(self, request: Request, message: str, status: HTTPStatus) -> Response:
        """The login page again, saying why, with the refusal's status."""
        assert self.templates is not None  # noqa: S101 - admin_plugin sets it before serving
        return await self.templates.TemplateResponse(request, LOGIN_TEMPLATE, {"error": message}, status_code=status)

    async def login(self, request: Request) -> Response | bool:
        if not await csrf_passes(request):
            return csrf_refused()
        form = await request.form()
        name, password = form.get("username"), form.get("password")
        if not isinstance(name, str) or not isinstance(password, str) or not name.strip():
            return False
        found = resources(request)
        client = request.client.host if request.client else "unknown"
        try:
            await found.login_rate_limiter.hit(f"login:client:{client}", f"login:account:{name.strip().lower()}")
        except TooManyRequests as exc:
            return await self.refusal(request, exc.detail, HTTPStatus.TOO_MANY_REQUESTS)
        async with found.database.get_session() as session:
            user = await UserService(session=session).find_by_login(name)
        profile = found.settings.password_hash_profile
        if not await verify_password(user.password_hash if user else None, password, profile) or user is None:
            return await self.refusal(request, INVALID_CREDENTIALS, HTTPStatus.UNAUTHORIZED)
        if user.role not in ADMIN_ROLES:
            return await self.refusal(request, NOT_A_CURATOR, HTTPStatus.FORBIDDEN)
        # A fresh session (and token) at sign-in: nothing planted before it carries over.
        request.session.clear()
        request.session.update({"user_id": user.id, "since": datetime.now(UTC).timestamp()})
        csrf_token(request)
        return True

    async def logout(self, request: Request) -> Response | bool:
        request.session.clear()
        return True

    async def authenticate(self, request: Request) -> Response | bool:
        user = await self._session_user(request)
        if user is None:
            request.session.pop("user_id", None)
            return False
        if not await csrf_passes(request):
            return csrf_refused()
        setattr(request.state, USER_STATE_KEY, user)
        return True

    async def get_user_id(self, request: Request) -> Any:
        return request.session.get("user_id")

    async def _session_user(self, request: Request) -> User | None:
        user_id, since = request.session.get("user_id"), request.session.get("since")
        if not isinstance(user_id, int) or not isinstance(since, float):
            return None
        async with resources(request).database.get_session() as session:
            user = await session.get(User, user_id)
        if user is None or user.role not in ADMIN_ROLES:
            return None
        if user.credentials_changed_at.timestamp() > since:
            return None
        return user


def is_admin(request: Request) -> bool:
    """Whether the signed-in account is an admin (users and roles are theirs alone)."""
    user: User | None = getattr(request.state, USER_STATE_KEY, None)
    return user is not None and user.role == Role.ADMIN

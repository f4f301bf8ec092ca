"""The curator admin at ``/admin``: sqladmin, mounted on the app through its Litestar plugin.

sqladmin serves its own files (no CDN) and needs no inline script or style on the pages we use, so the
app's Content-Security-Policy holds here as everywhere: the one inline script it ships (flash toasts)
is replaced by ``static/admin.js``. Sign-in, roles and CSRF are ours (:mod:`.auth`); reads are
sqladmin's, writes go through our services (:mod:`.views`, :mod:`.pages`).
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import structlog
from litestar import asgi
from litestar.config.app import AppConfig
from litestar.types import Message, Receive, Scope, Send
from sqladmin_litestar_plugin import SQLAdminPlugin
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from audioverse.accounts.auth import PUBLIC
from audioverse.csp import content_security_policy
from audioverse.web.admin.auth import AdminAuth, csrf_token
from audioverse.web.admin.context import RESOURCES_STATE_KEY, AdminResources
from audioverse.web.admin.pages import PAGE_VIEWS
from audioverse.web.admin.views import MODEL_VIEWS

ADMIN_PATH = "/admin"
HERE = Path(__file__).parent
STATIC_ROUTE = "audioverse-static"
STATIC_PATHS = (f"{ADMIN_PATH}/statics/", f"{ADMIN_PATH}/audioverse/")
UPLOAD_PATH = f"{ADMIN_PATH}/upload"


class AdminPlugin(SQLAdminPlugin):
    """The plugin's mount, passed by the API's bearer-token check and given the app's security headers.

    The admin signs in on its own; Litestar adds ``response_headers`` to its own responses, not to a
    mounted ASGI app's.
    """

    def __init__(self, headers: list[tuple[bytes, bytes]], body_limits: BodyLimits, **options: Any) -> None:
        super().__init__(**options)
        self.headers = headers
        self.body_limits = body_limits

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        for view in self.views:
            self.admin.add_view(view)
        starlette_app, headers, body_limits = self.starlette_app, self.headers, self.body_limits
        logger = structlog.get_logger(__name__)

        @asgi(ADMIN_PATH, is_mount=True, opt=PUBLIC, copy_scope=True)
        async def admin_app(scope: Scope, receive: Receive, send: Send) -> None:
            async def with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    present = {name.lower() for name, _ in message.get("headers", [])}
                    if scoped["path"].startswith(STATIC_PATHS):
                        present.add(b"cache-control")  # files may be cached; pages carry tokens and may not
                    message["headers"] = [
                        *message.get("headers", []),
                        *((name, value) for name, value in headers if name not in present),
                    ]
                await send(message)

            scoped: dict[str, Any] = dict(scope)
            # Litestar strips the mount path; sqladmin builds its links from the full one.
            scoped["path"] = ADMIN_PATH + scope["path"]
            if refusal := body_limits.refusal(scoped):
                # Starlette would spool a form of any size to disk (the login form too, before anyone signs in).
                await refusal(scoped, receive, with_headers)  # type: ignore[arg-type]
                return
            try:
                await starlette_app(scoped, receive, with_headers)  # type: ignore[arg-type]
            except Exception:  # Starlette has already answered 500; nothing is left to send
                logger.exception("the admin failed", path=scoped["path"])

        app_config.route_handlers.append(admin_app)
        return app_config


@dataclass(frozen=True)
class BodyLimits:
    """The largest body the admin reads: an upload's on the upload page, the API's JSON limit elsewhere."""

    form_bytes: int
    upload_bytes: int

    def refusal(self, scope: dict[str, Any]) -> Response | None:
        """413 for a body past the page's limit, 411 for one sent in chunks of unknown total; ``None`` to go on."""
        if scope["method"] in {"GET", "HEAD", "OPTIONS"}:
            return None
        # The upload form carries its fields and a cover beside the audio.
        limit = self.upload_bytes + self.form_bytes if scope["path"] == UPLOAD_PATH else self.form_bytes
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is None:
            # No length and no chunks is no body (a DELETE); chunks of unknown total are not taken.
            if "transfer-encoding" not in headers:
                return None
            return PlainTextResponse("A form needs a Content-Length.", status_code=HTTPStatus.LENGTH_REQUIRED)
        if not (length.isascii() and length.isdigit()) or len(length) > len(str(limit)) or int(length) > limit:
            return PlainTextResponse(
                f"The form is larger than this page takes ({limit} bytes).",
                status_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )
        return None


def open_to(entry: Any, request: Request) -> bool:
    """Jinja test: whether the viewer may see and open a menu entry (a category only through its pages)."""
    return bool(entry.is_visible(request) and entry.is_accessible(request))


def admin_plugin(admin_resources: AdminResources) -> AdminPlugin:
    """The admin for one app: its database, search engine, stores and secret."""
    auth = AdminAuth(admin_resources)
    settings = admin_resources.settings
    plugin = AdminPlugin(
        body_limits=BodyLimits(form_bytes=settings.max_body_bytes, upload_bytes=settings.max_upload_bytes),
        headers=[
            (b"content-security-policy", content_security_policy(admin_resources.settings).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
            (b"cache-control", b"no-store"),
        ],
        # sqladmin stores each admin's session factory and templates on the view classes it is given: each
        # app gets subclasses of its own, or the last app built would serve every app's views.
        views=[type(view.__name__, (view,), {}) for view in (*MODEL_VIEWS, *PAGE_VIEWS)],
        # sqladmin reads through a session factory of its own on the app's engine; writes take the app's
        # sessions, whose hooks record the outbox and the deferred jobs.
        engine=admin_resources.database.get_engine(),
        base_url=ADMIN_PATH,
        title="AudioVerse admin",
        templates_dir=str(HERE / "templates"),
        authentication_backend=auth,
    )
    admin = plugin.admin
    admin.admin.state.__setattr__(RESOURCES_STATE_KEY, admin_resources)
    admin.admin.router.routes.append(
        Mount("/audioverse", app=StaticFiles(directory=HERE / "static"), name=STATIC_ROUTE)
    )
    admin.favicon_url = f"{ADMIN_PATH}/audioverse/favicon.svg"
    admin.templates.env.globals["csrf_token"] = csrf_token
    admin.templates.env.tests["open_to"] = open_to
    auth.templates = admin.templates
    return plugin


__all__ = ["ADMIN_PATH", "AdminResources", "admin_plugin"]

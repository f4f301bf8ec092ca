"""The listener web app: its static files and ``index.html`` for every client-side route the app draws.

The page is plain HTML, CSS and ES modules under ``static/``: no build step, no CDN, so the embedded
profile works offline. Emails link to ``/verify-email?token=`` and ``/reset-password?token=``, which are
routes of this app as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import HttpMethod, Request, Response, Router, route
from litestar.datastructures import CacheControlHeader
from litestar.response import File
from litestar.response.file import create_etag_for_file
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_304_NOT_MODIFIED

from audioverse.accounts.auth import PUBLIC
from audioverse.static_files import SERVED_FILES
from audioverse.types import Id

STATIC_DIR = Path(__file__).parent / "static"
INDEX_HTML = STATIC_DIR / "index.html"
ASSETS_PATH = "/static/player"
CLIENT_ROUTES = [
    "/",
    "/search",
    "/library",
    "/favorites",
    "/history",
    "/profile",
    "/login",
    "/register",
    "/verify-email",
    "/forgot-password",
    "/reset-password",
]
"""Paths the app draws in the browser; a reload or a link from an email lands on any of them (and a book's page)."""

REVALIDATE = CacheControlHeader(no_cache=True)
"""Assets keep fixed names, so a browser revalidates each use (a 304 by ETag) instead of guessing an age."""


def _etag_of(path: Path) -> str | None:
    try:
        info = path.stat()
    except (OSError, ValueError):
        return None
    return create_etag_for_file(path=path, modified_time=info.st_mtime, file_size=info.st_size)


def _not_modified(request: Request[Any, Any, Any], path: Path) -> Response[bytes] | None:
    """A 304 when the browser's copy (``If-None-Match``) is the file's current version, computed as the file's ETag."""
    wanted = request.headers.get("if-none-match")
    etag = _etag_of(path) if wanted else None
    if etag is None or wanted is None or etag not in {tag.strip() for tag in wanted.split(",")}:
        return None
    return Response(
        b"", status_code=HTTP_304_NOT_MODIFIED, headers={"ETag": etag, "Cache-Control": REVALIDATE.to_header()}
    )


async def _asset_not_modified(request: Request[Any, Any, Any]) -> Response[bytes] | None:
    relative = str(request.path_params.get("file_path", "")).lstrip("/")
    try:
        candidate = (STATIC_DIR / relative).resolve()
    except (OSError, ValueError):  # a name no file can have (a NUL, a loop): the router answers 404
        return None
    if not candidate.is_relative_to(STATIC_DIR.resolve()):
        return None
    return _not_modified(request, candidate)


def _index_file() -> File:
    return File(INDEX_HTML, filename=INDEX_HTML.name, media_type="text/html", content_disposition_type="inline")


async def _index_not_modified(request: Request[Any, Any, Any]) -> Response[bytes] | None:
    return _not_modified(request, INDEX_HTML)


@route(
    CLIENT_ROUTES,
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    include_in_schema=False,
    cache_control=REVALIDATE,
    before_request=_index_not_modified,
)
async def index() -> File:
    """The app's one page; its modules read the address and draw the view."""
    return _index_file()


@route(
    "/books/{book_id:int}",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    include_in_schema=False,
    cache_control=REVALIDATE,
    before_request=_index_not_modified,
)
async def book_page(book_id: Id) -> File:
    """The app's page for a book; an id no book can have (0, past 64 bits) is refused as the API refuses it."""
    return _index_file()


player_router = Router(
    path="/",
    route_handlers=[
        index,
        book_page,
        create_static_files_router(
            path=ASSETS_PATH,
            directories=[STATIC_DIR],
            name="player_assets",
            cache_control=REVALIDATE,
            before_request=_asset_not_modified,
            include_in_schema=False,
            file_system=SERVED_FILES,
        ),
    ],
    opt=PUBLIC,
    include_in_schema=False,
)
"""Register in the app's ``route_handlers``."""

"""HTTP routes of listening: playback start, progress, bookmarks, library and listening lists."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus
from typing import Annotated, Any

from litestar import Controller, HttpMethod, Request, Response, delete, get, post, route
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIHeader, OpenAPIResponse, Reference
from litestar.params import Body, JSONBody, Parameter
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.auth import PUBLIC, USER_CHECKED_BY_HANDLER, TokenHolder, bearer_user, has_bearer_token
from audioverse.accounts.models import User
from audioverse.config import Settings
from audioverse.errors import Forbidden, Unauthorized, problem_responses
from audioverse.listening.deps import DEPENDENCIES
from audioverse.listening.progress_batch import ProgressSaves
from audioverse.listening.schemas import (
    SHELF_MAX_LENGTH,
    BookmarkPatch,
    BookmarkRead,
    BookmarkWrite,
    LibraryAdd,
    LibraryItem,
    ListeningItem,
    Playback,
    ProgressRead,
    ProgressWrite,
)
from audioverse.listening.services import (
    BookmarkService,
    LibraryService,
    PlaybackService,
    ProgressService,
    kept_stream_target,
    stream_target,
)
from audioverse.listening.streaming import StreamDelivery, stream_object
from audioverse.openapi import ContractOperation, binary_content, header, request_header
from audioverse.response_cache import RESPONSE_CACHE_STORE
from audioverse.signing import InvalidStreamToken, StreamTokenForAnotherBook, verify_stream_token
from audioverse.storage import S3Storage
from audioverse.types import Id, ListPage, Page, text_query

NOT_FOUND = problem_responses(HTTPStatus.NOT_FOUND)
WRITE_ERRORS = problem_responses(HTTPStatus.NOT_FOUND, HTTPStatus.UNPROCESSABLE_ENTITY)
PROGRESS_ERRORS = problem_responses(HTTPStatus.NOT_FOUND, HTTPStatus.CONFLICT, HTTPStatus.UNPROCESSABLE_ENTITY)
PROGRESS_RULE = (
    "The newest update across devices wins; a stale one → 409 with the stored progress in `progress` (resume "
    "from it). Updates are ordered by when they happened on the server's clock: `client_updated_at`, but never "
    "later than the request's receipt, so no device clock can lock the others out; with `client_sent_at` (the "
    "device's clock when sending) an update is dated by its age on the device's own clock, so a slow clock "
    "still wins with a live update and an update queued offline stays as old as it is. A device's own updates "
    "are also ordered by its own `client_updated_at` (an out-of-order one is stale), for 2 minutes after its "
    "last stored one. Another `device_id` jumping back more than 60 s within 30 s of the stored update is "
    "stale (a player that started at 0 must not undo the listener's place); later it wins. Within the last "
    "30 s of the book (or `is_completed`) marks it finished."
)


class PlaybackController(Controller):
    path = "/api/audiobooks/{audiobook_id:int}"
    tags = ["listening"]
    dependencies = DEPENDENCIES

    @get(
        "/playback",
        summary="Everything a player needs to start",
        description="`stream_url` is signed for the caller and this book and works without headers "
        "(an `<audio src>`); it expires at `stream_url_expires_at`. Counts a play, at most once per "
        "30 minutes per listener and book.",
        responses=NOT_FOUND,
    )
    async def playback(
        self,
        audiobook_id: Id,
        request: Request[User, Any, Any],
        playback_service: NamedDependency[PlaybackService],
        settings: NamedDependency[Settings],
        secret_key: NamedDependency[str],
    ) -> Playback:
        return await playback_service.start(
            request.user,
            audiobook_id,
            secret_key=secret_key,
            valid_for=timedelta(minutes=settings.stream_url_minutes),
            secure_link_secret=settings.stream_secure_link_secret if settings.storage_backend == "local" else None,
        )

    @get("/bookmarks", summary="Your bookmarks in this book, by position", responses=NOT_FOUND)
    async def list_bookmarks(
        self, audiobook_id: Id, request: Request[User, Any, Any], bookmark_service: NamedDependency[BookmarkService]
    ) -> list[BookmarkRead]:
        return await bookmark_service.in_book(request.user, audiobook_id)

    @post("/bookmarks", summary="Bookmark a moment", responses=WRITE_ERRORS)
    async def add_bookmark(
        self,
        audiobook_id: Id,
        data: JSONBody[BookmarkWrite],
        request: Request[User, Any, Any],
        bookmark_service: NamedDependency[BookmarkService],
    ) -> BookmarkRead:
        return await bookmark_service.add(request.user, audiobook_id, data)


AUDIO = "audio/*"
VALIDATORS: dict[str, OpenAPIHeader | Reference] = {
    "ETag": header("Entity tag of the file, for `If-Range` and `If-None-Match`."),
    "Last-Modified": header("When the file was stored."),
    "Accept-Ranges": header("`bytes`."),
}


@dataclass
class StreamOperation(ContractOperation):
    """The stream route answers with audio bytes, whole or in ranges, or a redirect to them."""

    def __post_init__(self) -> None:
        responses = dict(self.responses or {})
        length = {"Content-Length": header("Bytes in the body (for HEAD: that a GET would send).")}
        responses["200"] = OpenAPIResponse(
            description="The whole file (no `Range`, an unknown range unit, or a stale `If-Range`).",
            content=binary_content(AUDIO),
            headers={**VALIDATORS, **length},
        )
        responses["206"] = OpenAPIResponse(
            description="The requested range; several ranges come as `multipart/byteranges`.",
            content=binary_content(AUDIO, "multipart/byteranges"),
            headers={
                **VALIDATORS,
                **length,
                "Content-Range": header("`bytes first-last/size` (one range; in each part for several)."),
            },
        )
        responses["302"] = OpenAPIResponse(
            description="Audio in S3: a short-lived presigned URL that serves the bytes and ranges itself.",
            headers={"Location": header("The presigned URL.", required=True)},
        )
        responses["304"] = OpenAPIResponse(
            description="`If-None-Match` or `If-Modified-Since` matched: the client's copy is current.",
            headers=VALIDATORS,
        )
        unsatisfiable = responses["416"]
        if isinstance(unsatisfiable, OpenAPIResponse):
            unsatisfiable.headers = {"Content-Range": header("`bytes */size`.", required=True)}
        self.parameters = [
            *(self.parameters or []),
            request_header(
                "Range", "`bytes=first-last`, `bytes=first-`, `bytes=-suffix`, or several, comma-separated."
            ),
            request_header("If-Range", "An ETag or HTTP date: send the range only if the file still matches."),
            request_header("If-None-Match", "ETags the client holds: 304 when one matches."),
            request_header("If-Modified-Since", "HTTP date: 304 when the file has not changed since."),
        ]
        self.responses = responses
        super().__post_init__()


class StreamController(Controller):
    path = "/api/audiobooks/{audiobook_id:int}/stream"
    tags = ["listening"]
    dependencies = DEPENDENCIES

    @route(
        "/",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        summary="The audio bytes, with HTTP range requests",
        description="Needs a bearer token or the signed `token` query parameter of `/playback/`. Honors "
        "`Range` (`bytes=a-b`, `a-`, `-n`, several ranges as multipart/byteranges) as nginx does for static "
        "files: 206 with `Content-Range`, 416 with `Content-Range: bytes */size` when unsatisfiable or "
        "invalid, an unknown unit ignored (200); `If-Range`, `If-None-Match`/`If-Modified-Since` (304), "
        "`ETag`, `Last-Modified`, `Accept-Ranges: bytes`.",
        opt=PUBLIC,
        # Either proof is enough: a bearer token, or nothing but the signed `token` query parameter.
        security=[{"BearerToken": []}, {}],
        responses=problem_responses(HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND, 416),
        operation_class=StreamOperation,
    )
    async def stream(
        self,
        audiobook_id: Id,
        request: Request[Any, Any, Any],
        stream_delivery: NamedDependency[StreamDelivery],
        token: Annotated[str | None, text_query(2048)] = None,
    ) -> Response[Any]:
        delivery = stream_delivery
        # One dependency, and no request session: a player sends a range request every few seconds, and
        # resolving several dependencies (a task group) and committing an unused session cost more than the
        # bytes. The database is read only for a bearer token or a book not yet kept.
        store = request.app.stores.get(RESPONSE_CACHE_STORE)
        book = await kept_stream_target(store, audiobook_id)
        if book is None or has_bearer_token(request):
            # From the primary, as every answer the shared cache keeps: the book read here is kept for
            # later ranges, and a lagging replica's copy would outlive the change that made it stale.
            async with delivery.database.get_session() as session:
                await authorize_stream(request, session, delivery.secret_key, audiobook_id, token)
                book = book or await stream_target(session, store, audiobook_id)
        else:
            authorize_stream_token(delivery.secret_key, audiobook_id, token)
        settings = delivery.settings
        if isinstance(delivery.storage, S3Storage) and settings.s3_stream_mode == "redirect":
            # The client fetches exactly this object from S3, ranges and all; the URL outlives a session.
            url = await delivery.storage.presigned_url(book.audio_key, settings.stream_url_minutes * 60, book.mime_type)
            return Redirect(url, status_code=302)
        if settings.stream_accel_redirect_prefix:
            # nginx serves the bytes (and ranges) from its internal location; we only authorised.
            return Response(
                content=b"",
                media_type=book.mime_type,
                headers={"X-Accel-Redirect": settings.stream_accel_redirect_prefix + book.audio_key},
            )
        return await stream_object(
            delivery.storage,
            book.audio_key,
            method=request.method,
            headers=request.headers,
            content_type=book.mime_type,
            chunk_size=settings.stream_chunk_bytes,
        )


async def authorize_stream(
    request: Request[Any, Any, Any], session: AsyncSession, secret_key: str, audiobook_id: int, token: str | None
) -> None:
    """A bearer token, or a signed stream token for exactly this book."""
    if await bearer_user(request, session) is None:
        authorize_stream_token(secret_key, audiobook_id, token)


def authorize_stream_token(secret_key: str, audiobook_id: int, token: str | None) -> None:
    """The signed stream token of ``/playback/``, for exactly this book."""
    if token is None:
        raise Unauthorized("Send a bearer token or the signed `token` from /playback/.")
    try:
        verify_stream_token(secret_key, token, audiobook_id)
    except StreamTokenForAnotherBook as exc:
        raise Forbidden("This stream token is for another audiobook.") from exc
    except InvalidStreamToken as exc:
        raise Unauthorized("The stream token is invalid or expired; ask /playback/ for a new one.") from exc


class BookmarkController(Controller):
    path = "/api/bookmarks/{bookmark_id:int}"
    tags = ["listening"]
    dependencies = DEPENDENCIES

    @route("/", http_method=[HttpMethod.PUT, HttpMethod.PATCH], summary="Change your bookmark", responses=WRITE_ERRORS)
    async def update_bookmark(
        self,
        bookmark_id: Id,
        data: JSONBody[BookmarkPatch],
        request: Request[User, Any, Any],
        bookmark_service: NamedDependency[BookmarkService],
    ) -> BookmarkRead:
        return await bookmark_service.change(request.user, bookmark_id, data)

    @delete("/", summary="Delete your bookmark", responses=NOT_FOUND)
    async def delete_bookmark(
        self, bookmark_id: Id, request: Request[User, Any, Any], bookmark_service: NamedDependency[BookmarkService]
    ) -> None:
        await bookmark_service.remove(request.user, bookmark_id)


class ProgressController(Controller):
    path = "/api/progress/{audiobook_id:int}"
    tags = ["listening"]
    dependencies = DEPENDENCIES

    @get("/", summary="Your progress in a book", responses=NOT_FOUND)
    async def get_progress(
        self, audiobook_id: Id, request: Request[User, Any, Any], progress_service: NamedDependency[ProgressService]
    ) -> ProgressRead:
        return await progress_service.read(request.user, audiobook_id)

    @route(
        "/",
        http_method=[HttpMethod.POST, HttpMethod.PUT],
        summary="Save your position (the newest update across devices wins)",
        description=PROGRESS_RULE,
        # An upsert either way: POST answers 200 like PUT, not 201.
        status_code=HTTPStatus.OK,
        responses=PROGRESS_ERRORS,
        # The token's account is read with the rest of the batch the save joins.
        opt=USER_CHECKED_BY_HANDLER,
    )
    async def save_progress(
        self,
        audiobook_id: Id,
        data: JSONBody[ProgressWrite],
        request: Request[TokenHolder, Any, Any],
        progress_saves: NamedDependency[ProgressSaves],
    ) -> ProgressRead:
        return await progress_saves.save(request.user, audiobook_id, data)


class LibraryController(Controller):
    path = "/api/library"
    tags = ["library"]
    dependencies = DEPENDENCIES

    @get("/", summary="Your library, most recently added first")
    async def library(
        self,
        request: Request[User, Any, Any],
        library_service: NamedDependency[LibraryService],
        page: NamedDependency[Page],
        shelf: Annotated[str | None, text_query(SHELF_MAX_LENGTH, "Only this shelf.", min_length=1)] = None,
        favorite: Annotated[bool | None, Parameter(description="Only favorites (true).")] = None,
    ) -> ListPage[LibraryItem]:
        return ListPage.of(
            await library_service.library_page(request.user, page, shelf=shelf, favorites_only=bool(favorite))
        )

    @get("/favorites", summary="Your favorites, most recently marked first")
    async def favorites(
        self,
        request: Request[User, Any, Any],
        library_service: NamedDependency[LibraryService],
        page: NamedDependency[Page],
    ) -> ListPage[LibraryItem]:
        return ListPage.of(await library_service.library_page(request.user, page, favorites_only=True))

    @post(
        "/{audiobook_id:int}",
        summary="Add a book to your library (201 the first time, 200 after)",
        responses={
            **WRITE_ERRORS,
            HTTPStatus.OK: ResponseSpec(data_container=LibraryItem, description="Already in your library."),
        },
    )
    async def add(
        self,
        audiobook_id: Id,
        request: Request[User, Any, Any],
        library_service: NamedDependency[LibraryService],
        data: Annotated[LibraryAdd | None, Body(description="Optional shelf.")] = None,
    ) -> Response[LibraryItem]:
        item, created = await library_service.add(request.user, audiobook_id, data.shelf if data else None)
        return Response(item, status_code=HTTPStatus.CREATED if created else HTTPStatus.OK)

    @delete("/{audiobook_id:int}", summary="Remove a book from your library")
    async def remove(
        self, audiobook_id: Id, request: Request[User, Any, Any], library_service: NamedDependency[LibraryService]
    ) -> None:
        await library_service.remove(request.user, audiobook_id)

    @post("/{audiobook_id:int}/favorite", summary="Mark a favorite", status_code=HTTPStatus.OK, responses=NOT_FOUND)
    async def favorite(
        self, audiobook_id: Id, request: Request[User, Any, Any], library_service: NamedDependency[LibraryService]
    ) -> LibraryItem:
        return await library_service.set_favorite(request.user, audiobook_id, True)

    @delete("/{audiobook_id:int}/favorite", summary="Unmark a favorite", status_code=HTTPStatus.OK, responses=NOT_FOUND)
    async def unfavorite(
        self, audiobook_id: Id, request: Request[User, Any, Any], library_service: NamedDependency[LibraryService]
    ) -> LibraryItem:
        return await library_service.set_favorite(request.user, audiobook_id, False)


class ListeningController(Controller):
    """The listening lists; the library's older paths for two of them are served by the same handlers."""

    path = "/api"
    tags = ["library"]
    dependencies = DEPENDENCIES

    @get(["/listening/current", "/library/currently-listening"], summary="Started and not finished, most recent first")
    async def current(
        self,
        request: Request[User, Any, Any],
        progress_service: NamedDependency[ProgressService],
        page: NamedDependency[Page],
    ) -> ListPage[ListeningItem]:
        return ListPage.of(await progress_service.listening_page(request.user, page, completed=False))

    @get(["/listening/history", "/library/history"], summary="Everything you listened to, most recent first")
    async def history(
        self,
        request: Request[User, Any, Any],
        progress_service: NamedDependency[ProgressService],
        page: NamedDependency[Page],
    ) -> ListPage[ListeningItem]:
        return ListPage.of(await progress_service.listening_page(request.user, page, completed=None))

    @get("/listening/completed", summary="Finished books, most recent first")
    async def completed(
        self,
        request: Request[User, Any, Any],
        progress_service: NamedDependency[ProgressService],
        page: NamedDependency[Page],
    ) -> ListPage[ListeningItem]:
        return ListPage.of(await progress_service.listening_page(request.user, page, completed=True))

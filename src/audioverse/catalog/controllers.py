"""HTTP routes of the catalog: audiobooks, chapters, covers, authors, narrators and genres."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from litestar import Controller, HttpMethod, Request, delete, get, post, put, route
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import Body, JSONBody, Parameter
from litestar.response import Stream

from audioverse.accounts.auth import PUBLIC, requires_curator, requires_verified
from audioverse.accounts.models import User
from audioverse.catalog import schemas
from audioverse.catalog.deps import AUDIOBOOKS, AUTHORS, CATALOG_FILTERS, GENRES, NARRATORS, PUBLIC_SHARED
from audioverse.catalog.ingest import ingest
from audioverse.catalog.services import AudiobookService, GenreService, PeopleService
from audioverse.config import Settings
from audioverse.errors import NotFound, PayloadTooLarge, problem_responses
from audioverse.openapi import ImageOperation, file_field, form_operation
from audioverse.storage import ObjectNotFound, Storage
from audioverse.types import Id, ListPage, Page, text_query
from audioverse.uploads import IMAGE_TYPES
from search.query import FieldOrder, SearchFilters

NOT_FOUND = problem_responses(HTTPStatus.NOT_FOUND)
UPLOAD_FORM_OVERHEAD_BYTES = 16 * 1024 * 1024  # the cover and metadata fields beside the audio
EDIT_ERRORS = problem_responses(
    HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND, HTTPStatus.CONFLICT, HTTPStatus.UNPROCESSABLE_ENTITY
)


def _text(description: str, **constraints: Any) -> Schema:
    return Schema(type=OpenAPIType.STRING, description=description, **constraints)


def _names(what: str) -> Schema:
    return Schema(
        one_of=[Schema(type=OpenAPIType.STRING), Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.STRING))],
        description=f"{what}: repeat the field or separate names with commas.",
    )


UPLOAD_FORM = Schema(
    type=OpenAPIType.OBJECT,
    required=["audio"],
    # The server refuses a form field it does not know (422).
    additional_properties=False,
    properties={
        "audio": file_field("MP3, M4A/M4B, Ogg/Opus, FLAC or WAV; tags and chapters are read from it.", "audio/*"),
        "cover": file_field("A JPEG, PNG or WebP image (else the file's embedded art, if any).", "image/*"),
        "title": _text("At most 500 characters (else the file's title tag)."),
        "subtitle": _text("At most 500 characters."),
        "description": _text("At most 20,000 characters."),
        "authors": _names("Author names"),
        "narrators": _names("Narrator names"),
        "genres": _names("Genre names"),
        "language": _text("BCP 47 tag such as `en` or `pt-BR`."),
        "release_date": _text("ISO date.", format=OpenAPIFormat.DATE),
        "publisher": _text("At most 255 characters."),
        "isbn": _text("ISBN-10 or ISBN-13, digits only."),
        "series": _text("At most 255 characters."),
        "series_position": _text("A number ≥ 0."),
    },
)


async def refuse_oversized_upload(request: Request[Any, Any, Any]) -> None:
    settings: Settings = request.app.state.settings
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_upload_bytes + UPLOAD_FORM_OVERHEAD_BYTES:
        raise PayloadTooLarge(f"The upload is larger than the limit of {settings.max_upload_bytes} bytes.")


class AudiobookController(Controller):
    path = "/api/audiobooks"
    tags = ["catalog"]
    dependencies = AUDIOBOOKS

    @get(
        "/",
        summary="List audiobooks",
        opt=PUBLIC_SHARED,
        cache=True,
        dependencies=CATALOG_FILTERS,
        responses=problem_responses(HTTPStatus.BAD_REQUEST),
    )
    async def list_audiobooks(
        self,
        audiobooks: NamedDependency[AudiobookService],
        catalog_filters: NamedDependency[SearchFilters],
        page: NamedDependency[Page],
        sort: Annotated[FieldOrder, Parameter(description="Field, `-` for descending.")] = "-created_at",
    ) -> ListPage[schemas.AudiobookRead]:
        return ListPage.of(await audiobooks.list_books(catalog_filters, sort, page))

    @get(
        "/{audiobook_id:int}",
        summary="An audiobook with its chapters",
        opt=PUBLIC_SHARED,
        cache=True,
        responses=NOT_FOUND,
    )
    async def get_audiobook(
        self, audiobook_id: Id, audiobooks: NamedDependency[AudiobookService]
    ) -> schemas.AudiobookDetail:
        return await audiobooks.detail(audiobook_id)

    @route(
        "/{audiobook_id:int}",
        # PUT has always been the same partial update as PATCH: fields left out stay as they are.
        http_method=[HttpMethod.PUT, HttpMethod.PATCH],
        summary="Change some metadata (uploader or curator)",
        responses=EDIT_ERRORS,
    )
    async def update_audiobook(
        self,
        audiobook_id: Id,
        data: JSONBody[schemas.AudiobookUpdate],
        audiobooks: NamedDependency[AudiobookService],
        request: Request[User, Any, Any],
    ) -> schemas.AudiobookDetail:
        return await audiobooks.edit(audiobook_id, data, request.user)

    @delete(
        "/{audiobook_id:int}",
        summary="Delete an audiobook (uploader or curator)",
        description="Its audio and cover leave storage once the deletion has committed.",
        responses=problem_responses(HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND),
    )
    async def delete_audiobook(
        self, audiobook_id: Id, audiobooks: NamedDependency[AudiobookService], request: Request[User, Any, Any]
    ) -> None:
        await audiobooks.remove(audiobook_id, request.user)

    @get(
        "/{audiobook_id:int}/chapters", summary="Chapters, in order", opt=PUBLIC_SHARED, cache=True, responses=NOT_FOUND
    )
    async def get_chapters(
        self, audiobook_id: Id, audiobooks: NamedDependency[AudiobookService]
    ) -> list[schemas.ChapterRead]:
        return await audiobooks.chapters(audiobook_id)

    @put(
        "/{audiobook_id:int}/chapters",
        summary="Replace the chapter list (uploader or curator)",
        description="Ordered, non-overlapping, each within the book's duration.",
        responses=EDIT_ERRORS,
    )
    async def replace_chapters(
        self,
        audiobook_id: Id,
        data: Annotated[list[schemas.ChapterWrite], Body(description="The new chapters, in order.")],
        audiobooks: NamedDependency[AudiobookService],
        request: Request[User, Any, Any],
    ) -> list[schemas.ChapterRead]:
        return await audiobooks.replace_chapters(audiobook_id, data, request.user)

    @get(
        "/{audiobook_id:int}/cover",
        summary="The cover image",
        opt=PUBLIC,
        responses=NOT_FOUND,
        operation_class=ImageOperation,
    )
    async def get_cover(
        self, audiobook_id: Id, audiobooks: NamedDependency[AudiobookService], storage: NamedDependency[Storage]
    ) -> Stream:
        key = await audiobooks.cover_key(audiobook_id)
        try:
            info = await storage.stat(key)
        except ObjectNotFound as exc:
            raise NotFound("This audiobook has no cover.") from exc
        return Stream(
            storage.read_range(key),
            media_type=IMAGE_TYPES[key.rsplit(".", 1)[-1]],
            headers={"Content-Length": str(info.size), "Cache-Control": "public, max-age=31536000, immutable"},
        )

    @post(
        "/",
        summary="Upload an audiobook (verified users)",
        description="multipart/form-data: `audio` (MP3, M4A/M4B, Ogg/Opus, FLAC or WAV), optional `cover`, and "
        "metadata fields (`title, subtitle, description, authors, narrators, genres, language, release_date, "
        "publisher, isbn, series, series_position`; people and genres repeat or are comma-separated). "
        "Duration, bitrate, chapters, tags and embedded cover art are read from the file; form fields win. "
        "Unreadable audio → 422, over the size limit → 413; nothing is kept from a refused upload.",
        guards=[requires_verified],
        status_code=HTTPStatus.CREATED,
        # The form may be as large as the upload limit (checked up front from Content-Length, and while
        # copying); Litestar's whole-body cap would refuse it first.
        request_max_body_size=None,
        before_request=refuse_oversized_upload,
        operation_class=form_operation(UPLOAD_FORM),
        responses=problem_responses(
            HTTPStatus.FORBIDDEN, HTTPStatus.CONFLICT, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, 422
        ),
    )
    async def upload(
        self,
        data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
        audiobooks: NamedDependency[AudiobookService],
        storage: NamedDependency[Storage],
        settings: NamedDependency[Settings],
        request: Request[User, Any, Any],
    ) -> schemas.AudiobookDetail:
        return await ingest(
            audiobooks, storage, request.user, data, settings.max_upload_bytes, settings.max_picture_bytes
        )


class PeopleController(Controller):
    """Authors and narrators share one shape; subclasses provide their service as ``people``."""

    tags = ["catalog"]

    @get("/", summary="List, filtered by name with ?q=", opt=PUBLIC_SHARED, cache=True)
    async def list_people(
        self,
        people: NamedDependency[PeopleService[Any]],
        page: NamedDependency[Page],
        q: Annotated[str | None, text_query(255, "Part of the name.")] = None,
    ) -> ListPage[schemas.PersonRead]:
        return ListPage.of(await people.list_people(q, page))

    @get(
        "/{person_id:int}", summary="Profile with their audiobooks", opt=PUBLIC_SHARED, cache=True, responses=NOT_FOUND
    )
    async def get_person(self, person_id: Id, people: NamedDependency[PeopleService[Any]]) -> schemas.PersonDetail:
        return await people.profile(person_id)

    @route(
        "/{person_id:int}",
        http_method=[HttpMethod.PUT, HttpMethod.PATCH],
        summary="Edit (curators)",
        guards=[requires_curator],
        responses=EDIT_ERRORS,
    )
    async def update_person(
        self, person_id: Id, data: JSONBody[schemas.PersonUpdate], people: NamedDependency[PeopleService[Any]]
    ) -> schemas.PersonRead:
        return await people.edit(person_id, data)


class AuthorController(PeopleController):
    path = "/api/authors"
    dependencies = AUTHORS


class NarratorController(PeopleController):
    path = "/api/narrators"
    dependencies = NARRATORS


class GenreController(Controller):
    path = "/api/genres"
    tags = ["catalog"]
    dependencies = GENRES

    @get("/", summary="Every genre with its number of audiobooks", opt=PUBLIC_SHARED, cache=True)
    async def list_genres(self, genres: NamedDependency[GenreService]) -> list[schemas.GenreRead]:
        return await genres.with_counts()

"""HTTP routes of the catalog: audiobooks, chapters, covers, authors, narrators and genres."""

from __future__ import annotations

from datetime import date
from http import HTTPStatus
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, HttpMethod, Request, delete, get, post, put, route
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.exceptions import ValidationException
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import Body, Parameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.auth import PUBLIC, ensure_owner_or_curator, requires_curator, requires_verified
from audioverse.accounts.models import User
from audioverse.catalog.ingest import ingest
from audioverse.catalog.models import SHARED_AUDIO_PREFIX, Audiobook, Author, Narrator
from audioverse.catalog.schemas import (
    AudiobookDetail,
    AudiobookPage,
    AudiobookUpdate,
    ChapterRead,
    ChapterWrite,
    GenreRead,
    PersonDetail,
    PersonPage,
    PersonRead,
    PersonUpdate,
)
from audioverse.catalog.services import AudiobookQuery, Catalog
from audioverse.catalog.views import audiobook_read, chapter_reads
from audioverse.config import Settings
from audioverse.errors import NotFound, PayloadTooLarge, problem_responses
from audioverse.jobs import defer
from audioverse.openapi import ImageOperation, file_field, form_operation
from audioverse.storage import DELETE_TASK as DELETE_STORED_OBJECTS
from audioverse.storage import ObjectNotFound, Storage
from audioverse.types import Id, OptionalId, Page, text_query
from audioverse.uploads import IMAGE_TYPES
from search.query import SearchFilters

SortField = Literal[
    "title",
    "-title",
    "release_date",
    "-release_date",
    "duration_seconds",
    "-duration_seconds",
    "average_rating",
    "-average_rating",
    "play_count",
    "-play_count",
    "created_at",
    "-created_at",
]
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


# Litestar leaves a bound of 0 out of an optional parameter's schema; the server does enforce it.
AT_LEAST_ZERO = {"minimum": 0}


def provide_catalog_filters(
    genre: Annotated[str | None, text_query(100, "Genre slug.")] = None,
    author: Annotated[OptionalId, Parameter(description="Author id.")] = None,
    narrator: Annotated[OptionalId, Parameter(description="Narrator id.")] = None,
    language: Annotated[str | None, text_query(35)] = None,
    duration_min: Annotated[float | None, Parameter(ge=0, description="Seconds.", schema_extra=AT_LEAST_ZERO)] = None,
    duration_max: Annotated[float | None, Parameter(ge=0, description="Seconds.", schema_extra=AT_LEAST_ZERO)] = None,
    released_after: Annotated[date | None, Parameter(description="On or after this date.")] = None,
    released_before: Annotated[date | None, Parameter(description="On or before this date.")] = None,
    min_rating: Annotated[float | None, Parameter(ge=0, le=5, schema_extra=AT_LEAST_ZERO)] = None,
) -> SearchFilters:
    """The filters the list and the search endpoints share, from the query string."""
    try:
        return SearchFilters(
            genre=genre,
            author_id=author,
            narrator_id=narrator,
            language=language,
            duration_min=duration_min,
            duration_max=duration_max,
            released_after=released_after,
            released_before=released_before,
            min_rating=min_rating,
        )
    except ValueError as exc:  # "inf" parses as a float and passes ge=0
        raise ValidationException(f"Invalid filter: {exc}.") from exc


CATALOG_FILTERS = {"catalog_filters": Provide(provide_catalog_filters, sync_to_thread=False)}


async def refuse_oversized_upload(request: Request[Any, Any, Any]) -> None:
    settings: Settings = request.app.state.settings
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_upload_bytes + UPLOAD_FORM_OVERHEAD_BYTES:
        raise PayloadTooLarge(f"The upload is larger than the limit of {settings.max_upload_bytes} bytes.")


def provide_catalog(db_session: AsyncSession) -> Catalog:
    return Catalog(db_session)


def audiobook_detail(book: Audiobook) -> AudiobookDetail:
    return AudiobookDetail(**msgspec.structs.asdict(audiobook_read(book)), chapters=chapter_reads(book.chapters))


class AudiobookController(Controller):
    path = "/api/audiobooks"
    tags = ["catalog"]
    dependencies = {"catalog": Provide(provide_catalog, sync_to_thread=False)}

    @get(
        "/",
        summary="List audiobooks",
        opt=PUBLIC,
        dependencies=CATALOG_FILTERS,
        responses=problem_responses(HTTPStatus.BAD_REQUEST),
    )
    async def list_audiobooks(
        self,
        catalog: Catalog,
        catalog_filters: SearchFilters,
        page: Page,
        sort: Annotated[SortField, Parameter(description="Field, `-` for descending.")] = "-created_at",
    ) -> AudiobookPage:
        query = AudiobookQuery(filters=catalog_filters, sort=sort, limit=page.limit, offset=page.offset)
        books, total = await catalog.audiobooks.page(query)
        return AudiobookPage(
            items=[audiobook_read(book) for book in books], total=total, limit=page.limit, offset=page.offset
        )

    @get("/{audiobook_id:int}", summary="An audiobook with its chapters", opt=PUBLIC, responses=NOT_FOUND)
    async def get_audiobook(self, audiobook_id: Id, catalog: Catalog) -> AudiobookDetail:
        return audiobook_detail(await catalog.audiobooks.detail(audiobook_id))

    async def _editable(self, audiobook_id: int, catalog: Catalog, user: User) -> Audiobook:
        book = await catalog.audiobooks.detail(audiobook_id)
        ensure_owner_or_curator(user, book.uploaded_by_id, "this audiobook")
        return book

    @route(
        "/{audiobook_id:int}",
        # PUT has always been the same partial update as PATCH: fields left out stay as they are.
        http_method=[HttpMethod.PUT, HttpMethod.PATCH],
        summary="Change some metadata (uploader or curator)",
        responses=EDIT_ERRORS,
    )
    async def update_audiobook(
        self, audiobook_id: Id, data: AudiobookUpdate, catalog: Catalog, request: Request[User, Any, Any]
    ) -> AudiobookDetail:
        book = await self._editable(audiobook_id, catalog, request.user)
        fields = {name: value for name, value in msgspec.structs.asdict(data).items() if value is not msgspec.UNSET}
        await catalog.set_people_and_genres(
            book,
            authors=fields.pop("authors", None),
            narrators=fields.pop("narrators", None),
            genres=fields.pop("genres", None),
        )
        for name, value in fields.items():
            setattr(book, name, value)
        await catalog.session.flush()
        await catalog.session.refresh(book, attribute_names=["updated_at"])
        return audiobook_detail(book)

    @delete(
        "/{audiobook_id:int}",
        summary="Delete an audiobook (uploader or curator)",
        description="Its audio and cover leave storage once the deletion has committed.",
        responses=problem_responses(HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND),
    )
    async def delete_audiobook(self, audiobook_id: Id, catalog: Catalog, request: Request[User, Any, Any]) -> None:
        book = await self._editable(audiobook_id, catalog, request.user)
        # Large demo catalogs share a few recordings; those stay for the other books.
        keys = [key for key in (book.audio_key, book.cover_key) if key and not key.startswith(SHARED_AUDIO_PREFIX)]
        await catalog.session.delete(book)
        await catalog.session.flush()
        if keys:
            await defer(catalog.session, DELETE_STORED_OBJECTS, keys)

    @get("/{audiobook_id:int}/chapters", summary="Chapters, in order", opt=PUBLIC, responses=NOT_FOUND)
    async def get_chapters(self, audiobook_id: Id, catalog: Catalog) -> list[ChapterRead]:
        return chapter_reads((await catalog.audiobooks.detail(audiobook_id)).chapters)

    @put(
        "/{audiobook_id:int}/chapters",
        summary="Replace the chapter list (uploader or curator)",
        description="Ordered, non-overlapping, each within the book's duration.",
        responses=EDIT_ERRORS,
    )
    async def replace_chapters(
        self,
        audiobook_id: Id,
        data: Annotated[list[ChapterWrite], Body(description="The new chapters, in order.")],
        catalog: Catalog,
        request: Request[User, Any, Any],
    ) -> list[ChapterRead]:
        book = await self._editable(audiobook_id, catalog, request.user)
        await catalog.replace_chapters(book, data)
        return chapter_reads(book.chapters)

    @get(
        "/{audiobook_id:int}/cover",
        summary="The cover image",
        opt=PUBLIC,
        responses=NOT_FOUND,
        operation_class=ImageOperation,
    )
    async def get_cover(self, audiobook_id: Id, catalog: Catalog, storage: Storage) -> Stream:
        book = await catalog.audiobooks.get_one_or_none(id=audiobook_id)
        if book is None or not book.cover_key:
            raise NotFound("This audiobook has no cover.")
        try:
            info = await storage.stat(book.cover_key)
        except ObjectNotFound as exc:
            raise NotFound("This audiobook has no cover.") from exc
        return Stream(
            storage.read_range(book.cover_key),
            media_type=IMAGE_TYPES[book.cover_key.rsplit(".", 1)[-1]],
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
        catalog: Catalog,
        storage: Storage,
        settings: Settings,
        request: Request[User, Any, Any],
    ) -> AudiobookDetail:
        book = await ingest(catalog, storage, request.user, data, settings.max_upload_bytes, settings.max_picture_bytes)
        return audiobook_detail(await catalog.audiobooks.detail(book.id))


class PeopleController(Controller):
    """Authors and narrators share one shape; subclasses name the model."""

    model: type[Author] | type[Narrator] = Author
    tags = ["catalog"]
    dependencies = {"catalog": Provide(provide_catalog, sync_to_thread=False)}

    async def _person(self, catalog: Catalog, person_id: int) -> Author | Narrator:
        person: Author | Narrator | None = await catalog.session.get(self.model, person_id)
        if person is None:
            raise NotFound(f"No {self.model.__name__.lower()} with id {person_id}.")
        return person

    @get("/", summary="List, filtered by name with ?q=", opt=PUBLIC)
    async def list_people(
        self,
        catalog: Catalog,
        page: Page,
        q: Annotated[str | None, text_query(255, "Part of the name.")] = None,
    ) -> PersonPage:
        rows, total = await catalog.people_page(self.model, q=q, limit=page.limit, offset=page.offset)
        return PersonPage(
            items=[person_read(person, count) for person, count in rows],
            total=total,
            limit=page.limit,
            offset=page.offset,
        )

    @get("/{person_id:int}", summary="Profile with their audiobooks", opt=PUBLIC, responses=NOT_FOUND)
    async def get_person(self, person_id: Id, catalog: Catalog) -> PersonDetail:
        person = await self._person(catalog, person_id)
        filters = SearchFilters(author_id=person_id) if self.model is Author else SearchFilters(narrator_id=person_id)
        books, total = await catalog.audiobooks.page(AudiobookQuery(filters=filters, sort="title", limit=100))
        return PersonDetail(
            **msgspec.structs.asdict(person_read(person, total)), audiobooks=[audiobook_read(b) for b in books]
        )

    @route(
        "/{person_id:int}",
        http_method=[HttpMethod.PUT, HttpMethod.PATCH],
        summary="Edit (curators)",
        guards=[requires_curator],
        responses=EDIT_ERRORS,
    )
    async def update_person(self, person_id: Id, data: PersonUpdate, catalog: Catalog) -> PersonRead:
        person = await self._person(catalog, person_id)
        for name, value in msgspec.structs.asdict(data).items():
            if value is not msgspec.UNSET:
                setattr(person, name, value)
        await catalog.session.flush()
        return person_read(person, await catalog.audiobook_count(self.model, person.id))


def person_read(person: Author | Narrator, audiobooks_count: int) -> PersonRead:
    return PersonRead(
        id=person.id,
        name=person.name,
        bio=person.bio,
        photo_url=person.photo_url,
        website=person.website,
        audiobooks_count=audiobooks_count,
    )


class AuthorController(PeopleController):
    path = "/api/authors"
    model = Author


class NarratorController(PeopleController):
    path = "/api/narrators"
    model = Narrator


class GenreController(Controller):
    path = "/api/genres"
    tags = ["catalog"]

    @get("/", summary="Every genre with its number of audiobooks", opt=PUBLIC)
    async def list_genres(self, db_session: AsyncSession) -> list[GenreRead]:
        rows = await Catalog(db_session).genres_with_counts()
        return [
            GenreRead(
                id=genre.id, name=genre.name, slug=genre.slug, description=genre.description, audiobooks_count=count
            )
            for genre, count in rows
        ]

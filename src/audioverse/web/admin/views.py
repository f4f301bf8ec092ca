"""The admin's table views: the catalog, reviews and (admins only) users, listed by sqladmin, changed by our services.

sqladmin reads and lists rows itself; every write goes through the domain's service in a session of
the app's database (:func:`committing_session`), so the search outbox, deferred jobs (aggregates,
storage deletes) and cache bumps follow as they do after the API's writes. A view that does not
override a write has that write switched off.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
from sqladmin import ModelView
from sqladmin.forms import ModelConverter, converts
from sqlalchemy import Select
from sqlalchemy.orm import ColumnProperty
from starlette.exceptions import HTTPException
from starlette.requests import Request
from wtforms import DateField, FloatField, Form, SelectField, StringField, TextAreaField
from wtforms.validators import InputRequired, Optional

from audioverse.accounts.models import Role, User
from audioverse.accounts.services import UserService
from audioverse.catalog.models import Audiobook, Author, Chapter, Genre, Narrator
from audioverse.catalog.schemas import AudiobookUpdate, PersonUpdate
from audioverse.catalog.services import (
    AudiobookService,
    AuthorService,
    GenreService,
    NarratorService,
    PeopleService,
)
from audioverse.errors import NotFound
from audioverse.reviews.models import Review
from audioverse.web.admin.auth import is_admin
from audioverse.web.admin.context import committing_session, is_row_id, signed_in

CATALOG = "Catalog"
NAME_LISTS = frozenset({"authors", "narrators", "genres"})
NULLABLE = frozenset({"subtitle", "publisher", "isbn", "series", "photo_url", "website"})

BOOK_FIELDS = tuple(AudiobookUpdate.__struct_fields__)
PERSON_FIELDS = tuple(PersonUpdate.__struct_fields__)


def _changes(data: dict[str, Any], fields: tuple[str, ...], kind: type[msgspec.Struct]) -> Any:
    """The form's values as the API's update body, checked by the same rules (lengths, formats)."""
    given: dict[str, Any] = {}
    for name in fields:
        if name not in data:
            continue
        value = data[name]
        if name in NAME_LISTS:
            value = [item.strip() for item in str(value or "").split(",") if item.strip()]
        elif isinstance(value, str):
            # An emptied optional field clears it; the required ones refuse "" by their own rules.
            value = value.strip() or (None if name in NULLABLE else "")
        given[name] = value
    return msgspec.convert(given, kind)


FIELD = {"class": "form-control"}
"""How sqladmin's own fields look (its converter adds this class to the fields it makes)."""


class BookForm(Form):
    """A book's metadata as the API's update takes it: people and genres by name, comma-separated."""

    title = StringField("Title", validators=[InputRequired()], render_kw=FIELD)
    subtitle = StringField("Subtitle", render_kw=FIELD)
    description = TextAreaField("Description", render_kw=FIELD | {"rows": 6})
    authors = StringField(
        "Authors", description="Names separated by commas.", validators=[InputRequired()], render_kw=FIELD
    )
    narrators = StringField("Narrators", description="Names separated by commas.", render_kw=FIELD)
    genres = StringField("Genres", description="Names separated by commas.", render_kw=FIELD)
    language = StringField(
        "Language", description="A BCP 47 tag, such as en or pt-BR.", validators=[InputRequired()], render_kw=FIELD
    )
    release_date = DateField("Release date", validators=[Optional()], render_kw=FIELD)
    publisher = StringField("Publisher", render_kw=FIELD)
    isbn = StringField("ISBN", render_kw=FIELD)
    series = StringField("Series", render_kw=FIELD)
    series_position = FloatField("Position in the series", validators=[Optional()], render_kw=FIELD)


class Converter(ModelConverter):
    """sqladmin's form fields, plus SQLAlchemy 2.1's ``Float`` (no longer a ``Numeric``, which sqladmin maps)."""

    @converts("Float", "Double")  # type: ignore[untyped-decorator]
    def conv_float(self, model: type, prop: ColumnProperty[Any], kwargs: dict[str, Any]) -> FloatField:
        return FloatField(**kwargs)


class ServiceView(ModelView):
    """Listing and details by sqladmin; no write unless a subclass routes it through a service."""

    form_converter = Converter

    can_create = False
    can_edit = False
    can_delete = False
    can_export = False
    page_size = 25
    page_size_options: ClassVar[list[int]] = [25, 50, 100]

    def _stmt_by_identifier(self, identifier: str) -> Select[Any]:
        # Every model here has one 64-bit id: anything else in the address names no row (404, as in the
        # API), where sqladmin would convert it and fail (500 for "abc" or an id past 64 bits).
        if not is_row_id(identifier):
            raise HTTPException(status_code=404, detail=f"No {self.name} with id {identifier[:40]!r}.")
        return super()._stmt_by_identifier(identifier)


class AudiobookAdmin(ServiceView, model=Audiobook):
    name = "Audiobook"
    name_plural = "Audiobooks"
    icon = "fa-solid fa-book"
    category = CATALOG
    can_edit = True
    can_delete = True
    column_list: ClassVar[Any] = [
        Audiobook.id,
        Audiobook.title,
        Audiobook.language,
        Audiobook.series,
        Audiobook.average_rating,
        Audiobook.total_reviews,
        Audiobook.play_count,
        Audiobook.uploaded_by_id,
        Audiobook.created_at,
    ]
    column_searchable_list: ClassVar[Any] = [Audiobook.title, Audiobook.series, Audiobook.isbn]
    # Newest first, with who uploaded each: the list is also where curators review uploads.
    column_sortable_list: ClassVar[Any] = [
        Audiobook.id,
        Audiobook.title,
        Audiobook.average_rating,
        Audiobook.play_count,
        Audiobook.created_at,
    ]
    column_default_sort: ClassVar[Any] = (Audiobook.id, True)
    column_details_exclude_list: ClassVar[Any] = [Audiobook.chapters]
    column_formatters_detail: ClassVar[Any] = {
        # sqladmin passes the column's name beside the row.
        relation: lambda book, name: ", ".join(item.name for item in getattr(book, name))
        for relation in (Audiobook.authors, Audiobook.narrators, Audiobook.genres)
    }
    form = BookForm

    async def get_object_for_edit(self, request: Request) -> Any:
        async with committing_session(request) as session:
            try:
                return await AudiobookService(session=session).book(int(request.path_params["pk"]))
            except (NotFound, ValueError):
                return None

    async def get_form_data_for_edit(self, obj: Any) -> dict[str, Any]:
        book: Audiobook = obj
        data = {name: getattr(book, name) for name in BOOK_FIELDS if name not in NAME_LISTS}
        return data | {name: ", ".join(item.name for item in getattr(book, name)) for name in NAME_LISTS}

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        changes = _changes(data, BOOK_FIELDS, AudiobookUpdate)
        async with committing_session(request) as session:
            books = AudiobookService(session=session)
            await books.edit(int(pk), changes, signed_in(request))
            return await books.get(int(pk))

    async def delete_model(self, request: Request, pk: Any) -> None:
        async with committing_session(request) as session:
            await AudiobookService(session=session).remove(int(pk), signed_in(request))


class PersonAdmin(ServiceView):
    """Authors and narrators: edited through their people service, as the API edits them."""

    service_type: ClassVar[type[PeopleService[Any]]]

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        changes = _changes(data, PERSON_FIELDS, PersonUpdate)
        async with committing_session(request) as session:
            people = self.service_type(session=session)
            await people.edit(int(pk), changes)
            return await people.get(int(pk))


class AuthorAdmin(PersonAdmin, model=Author):
    name = "Author"
    name_plural = "Authors"
    icon = "fa-solid fa-pen-nib"
    category = CATALOG
    can_edit = True
    column_list: ClassVar[Any] = [Author.id, Author.name, Author.website]
    column_searchable_list: ClassVar[Any] = [Author.name]
    column_sortable_list: ClassVar[Any] = [Author.id, Author.name]
    column_details_exclude_list: ClassVar[Any] = [Author.audiobooks]
    form_columns: ClassVar[Any] = [Author.name, Author.bio, Author.photo_url, Author.website]

    service_type = AuthorService


class NarratorAdmin(PersonAdmin, model=Narrator):
    name = "Narrator"
    name_plural = "Narrators"
    icon = "fa-solid fa-microphone"
    category = CATALOG
    can_edit = True
    column_list: ClassVar[Any] = [Narrator.id, Narrator.name, Narrator.website]
    column_searchable_list: ClassVar[Any] = [Narrator.name]
    column_sortable_list: ClassVar[Any] = [Narrator.id, Narrator.name]
    column_details_exclude_list: ClassVar[Any] = [Narrator.audiobooks]
    form_columns: ClassVar[Any] = [Narrator.name, Narrator.bio, Narrator.photo_url, Narrator.website]

    service_type = NarratorService


class GenreAdmin(ServiceView, model=Genre):
    name = "Genre"
    name_plural = "Genres"
    icon = "fa-solid fa-tags"
    category = CATALOG
    can_edit = True
    column_list: ClassVar[Any] = [Genre.id, Genre.name, Genre.slug]
    column_searchable_list: ClassVar[Any] = [Genre.name]
    column_sortable_list: ClassVar[Any] = [Genre.id, Genre.name]
    # A genre's name and slug are what filters and links use; only its description is curated here.
    form_columns: ClassVar[Any] = [Genre.description]

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        async with committing_session(request) as session:
            return await GenreService(session=session).update(
                {"description": str(data.get("description") or "").strip()}, item_id=int(pk), auto_commit=False
            )


class ChapterAdmin(ServiceView, model=Chapter):
    name = "Chapter"
    name_plural = "Chapters"
    icon = "fa-solid fa-list-ol"
    category = CATALOG
    column_list: ClassVar[Any] = [
        Chapter.id,
        Chapter.audiobook_id,
        Chapter.chapter_number,
        Chapter.title,
        Chapter.start_time_seconds,
        Chapter.end_time_seconds,
    ]
    column_searchable_list: ClassVar[Any] = [Chapter.title]
    column_sortable_list: ClassVar[Any] = [Chapter.id, Chapter.audiobook_id, Chapter.chapter_number]
    column_details_exclude_list: ClassVar[Any] = [Chapter.audiobook]


class ReviewAdmin(ServiceView, model=Review):
    """Every review, hidden ones too; hiding and showing happen on the moderation page."""

    name = "Review"
    name_plural = "Reviews"
    icon = "fa-solid fa-comments"
    category = "Reviews"
    column_list: ClassVar[Any] = [
        Review.id,
        Review.audiobook_id,
        Review.author,
        Review.rating,
        Review.status,
        Review.review_text,
        Review.created_at,
    ]
    column_searchable_list: ClassVar[Any] = [Review.review_text]
    column_sortable_list: ClassVar[Any] = [Review.id, Review.rating, Review.created_at]
    column_default_sort: ClassVar[Any] = (Review.id, True)
    column_formatters: ClassVar[Any] = {Review.author: lambda review, _: review.author.username}
    column_formatters_detail: ClassVar[Any] = {Review.author: lambda review, _: review.author.username}


class UserAdmin(ServiceView, model=User):
    """Accounts and their roles, for admins alone; a role change ends the account's tokens and sessions."""

    name = "User"
    name_plural = "Users"
    icon = "fa-solid fa-users"
    category = "Accounts"
    can_edit = True
    column_list: ClassVar[Any] = [User.id, User.username, User.email, User.role, User.is_verified, User.created_at]
    column_searchable_list: ClassVar[Any] = [User.username, User.email]
    column_sortable_list: ClassVar[Any] = [User.id, User.username, User.created_at]
    column_details_exclude_list: ClassVar[Any] = [User.password_hash]
    form_columns: ClassVar[Any] = [User.role]
    form_overrides: ClassVar[Any] = {"role": SelectField}
    form_args: ClassVar[Any] = {"role": {"choices": [(role.value, role.value) for role in Role]}}

    def is_accessible(self, request: Request) -> bool:
        return is_admin(request)

    def is_visible(self, request: Request) -> bool:
        return is_admin(request)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        async with committing_session(request) as session:
            return await UserService(session=session).change_role(int(pk), Role(data["role"]))


MODEL_VIEWS: list[type[ModelView]] = [
    AudiobookAdmin,
    AuthorAdmin,
    NarratorAdmin,
    GenreAdmin,
    ChapterAdmin,
    ReviewAdmin,
    UserAdmin,
]

"""Catalog rules and queries: listing, people and genres by name, edits, chapters, search and its tuning."""

from __future__ import annotations

import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from functools import cache
from typing import Any, ClassVar, Literal, TypeVar, cast

import msgspec
from advanced_alchemy.filters import ComparisonFilter, LimitOffset, OrderBy, SearchFilter, StatementFilter
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import OffsetPagination, SQLAlchemyAsyncRepositoryService
from sqlalchemy import (
    Column,
    ColumnElement,
    CompoundSelect,
    Row,
    Select,
    String,
    bindparam,
    delete,
    exists,
    func,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload, with_expression
from sqlalchemy.orm.strategy_options import _AbstractLoad

from audioverse.accounts.auth import ensure_owner_or_curator
from audioverse.accounts.models import User
from audioverse.catalog.default_synonyms import default_synonym_sets
from audioverse.catalog.models import (
    GENRE_NAME_MAX_LENGTH,
    PERSON_NAME_MAX_LENGTH,
    SEARCH_REPORT_QUERY_MAX_LENGTH,
    SHARED_AUDIO_PREFIX,
    Audiobook,
    Author,
    Chapter,
    Genre,
    Narrator,
    SearchSynonyms,
    ZeroResultQuery,
    audiobook_author,
    audiobook_genre,
    audiobook_narrator,
    cover_url,
)
from audioverse.catalog.outbox import drain_turns
from audioverse.catalog.schemas import (
    AudiobookDetail,
    AudiobookRead,
    AudiobookUpdate,
    ChapterRead,
    ChapterWrite,
    GenreRead,
    PersonDetail,
    PersonRead,
    PersonUpdate,
    SearchItem,
    SearchPage,
    SynonymSetsRead,
    SynonymSetsWrite,
    ZeroResultRead,
)
from audioverse.catalog.views import chapter_reads
from audioverse.db import one_of, take_turns, upsert_into
from audioverse.errors import FieldError, NotFound, ServiceUnavailable, Unprocessable
from audioverse.jobs import defer
from audioverse.response_cache import STALE_KEY
from audioverse.storage import DELETE_TASK as DELETE_STORED_OBJECTS
from search import SearchEngine, SearchEngineUnavailable
from search.query import SearchFilters, SearchQuery

LIST_LOAD: list[_AbstractLoad] = [
    selectinload(Audiobook.authors),
    selectinload(Audiobook.narrators),
    selectinload(Audiobook.genres),
]
DETAIL_LOAD: list[_AbstractLoad] = [*LIST_LOAD, selectinload(Audiobook.chapters)]
PROFILE_BOOKS = LimitOffset(limit=100, offset=0)
"""The books a person's profile shows, by title."""
Person = TypeVar("Person", Author, Narrator)


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:GENRE_NAME_MAX_LENGTH] or "genre"


def clean_names(names: Sequence[str], max_length: int) -> list[str]:
    """Trimmed, cut to ``max_length`` (tags read from a file are not validated), de-duplicated case-insensitively."""
    seen: dict[str, str] = {}
    for name in names:
        trimmed = " ".join(name.split())[:max_length].rstrip()
        if trimmed and trimmed.lower() not in seen:
            seen[trimmed.lower()] = trimmed
    return list(seen.values())


def given_fields(changes: msgspec.Struct) -> dict[str, Any]:
    """The fields a partial update sets (those left out are ``UNSET``)."""
    return {name: value for name, value in msgspec.structs.asdict(changes).items() if value is not msgspec.UNSET}


def catalog_filters(wanted: SearchFilters, genre_id: int | None) -> list[StatementFilter | ColumnElement[bool]]:
    """The list endpoint's filters (the same as search's) as statement filters; ``genre_id`` is ``wanted.genre``'s."""
    filters: list[StatementFilter | ColumnElement[bool]] = []
    if genre_id is not None:
        # The id goes into the SQL text, not a parameter: the planner then knows how many books the genre
        # has (a plan for 40,000 books walks the sort's index; one for 3 reads the genre's rows and sorts).
        in_genre = (audiobook_genre.c.audiobook_id == Audiobook.id) & (
            audiobook_genre.c.genre_id == literal(genre_id, literal_execute=True)
        )
        filters.append(exists().where(in_genre))
    if wanted.author_id is not None:
        filters.append(Audiobook.authors.any(Author.id == wanted.author_id))
    if wanted.narrator_id is not None:
        filters.append(Audiobook.narrators.any(Narrator.id == wanted.narrator_id))
    comparisons: list[tuple[str, str, Any]] = [
        ("language", "eq", wanted.language),
        ("duration_seconds", "ge", wanted.duration_min),
        ("duration_seconds", "le", wanted.duration_max),
        ("release_date", "ge", wanted.released_after),
        ("release_date", "le", wanted.released_before),
        ("average_rating", "ge", wanted.min_rating),
    ]
    filters.extend(
        ComparisonFilter(field_name=column, operator=operator, value=value)
        for column, operator, value in comparisons
        if value is not None
    )
    return filters


def ordered_by(sort: str) -> list[OrderBy]:
    """``sort`` is a column, ``-`` first for descending."""
    direction: Literal["asc", "desc"] = "desc" if sort.startswith("-") else "asc"
    column = sort.removeprefix("-")
    # Rows without a value (no release date) go last either way; ids break ties so pages are stable. A
    # column that is never null gets no NULLS clause, so its (column, id) index serves both directions.
    nulls: Literal["last"] | None = "last" if Audiobook.__table__.c[column].nullable else None
    return [
        OrderBy(field_name=column, sort_order=direction, nulls=nulls),
        OrderBy(field_name="id", sort_order=direction),
    ]


_LINKS = (
    ("authors", audiobook_author, audiobook_author.c.author_id, Author, null().cast(String)),
    ("narrators", audiobook_narrator, audiobook_narrator.c.narrator_id, Narrator, null().cast(String)),
    ("genres", audiobook_genre, audiobook_genre.c.genre_id, Genre, Genre.slug),
)
CARD_COLUMNS = [
    column
    for column in Audiobook.__table__.columns
    if column.key in {field.name for field in msgspec.structs.fields(AudiobookRead)} | {"cover_key", "uploaded_by_id"}
]


@cache
def _links_statement(dialect: str, *, by_range: bool) -> CompoundSelect[Any]:
    # Built once: the shelves read links on every request, and building the statement cost more than running it.
    def of_these_books(column: Column[Any]) -> ColumnElement[bool]:
        return column.between(bindparam("first"), bindparam("last")) if by_range else one_of(column, "ids", dialect)

    return union_all(
        *(
            select(literal(kind).label("kind"), table.c.audiobook_id, model.id, model.name, slug)
            .join(model, model.id == key)
            .where(of_these_books(table.c.audiobook_id))
            for kind, table, key, model, slug in _LINKS
        )
    )


@cache
def _cards_statement(dialect: str) -> Select[Any]:
    return select(*CARD_COLUMNS).where(one_of(Audiobook.id, "ids", dialect))


async def book_links(
    session: AsyncSession, ids: Collection[int], *, every_id_between: tuple[int, int] | None = None
) -> dict[int, dict[str, list[dict[str, Any]]]]:
    """Each book's authors, narrators and genres as plain ``{id, name}`` (genres also ``slug``), in one statement.

    ``every_id_between`` (first, last) says ``ids`` are all the books in that range, which is then read as
    a range: a reindex batch of thousands of ids costs more to send as a list than to read.
    """
    links: dict[int, dict[str, list[dict[str, Any]]]] = {book_id: {kind: [] for kind, *_ in _LINKS} for book_id in ids}
    if not links:
        return links
    statement = _links_statement(session.get_bind().dialect.name, by_range=every_id_between is not None)
    bounds = {"first": every_id_between[0], "last": every_id_between[1]} if every_id_between else {"ids": list(links)}
    for kind, audiobook_id, link_id, name, slug in await session.execute(statement, bounds):
        ref = {"id": link_id, "name": name} if slug is None else {"id": link_id, "name": name, "slug": slug}
        links[audiobook_id][kind].append(ref)
    return links


async def book_cards(session: AsyncSession, ids: Sequence[int]) -> dict[int, AudiobookRead]:
    """The list form of the books among ``ids`` that exist, by id, read as plain rows in two statements.

    The shelves and pages that show many books need only their wire form: building ORM objects and
    their three link collections for each costs more than the queries themselves.
    """
    if not ids:
        return {}
    rows = {
        row.id: row
        for row in await session.execute(_cards_statement(session.get_bind().dialect.name), {"ids": list(ids)})
    }
    links = await book_links(session, rows)
    return {book_id: book_card(row, links[book_id]) for book_id, row in rows.items()}


def book_card(row: Row[Any], links: dict[str, list[dict[str, Any]]]) -> AudiobookRead:
    """The list form of a book from its :data:`CARD_COLUMNS` row and its links (:func:`book_links`)."""
    card = dict(row._mapping)
    card["cover_url"] = cover_url(card["id"], card.pop("cover_key"))
    card["uploaded_by"] = card.pop("uploaded_by_id")
    card["average_rating"] = float(card["average_rating"])
    return msgspec.convert(card | links, AudiobookRead)


@contextmanager
def engine_errors_as_503() -> Iterator[None]:
    """An unreachable search engine answers 503, which the client may retry shortly."""
    try:
        yield
    except SearchEngineUnavailable as exc:
        raise ServiceUnavailable(
            "Search is unavailable right now; try again shortly.", headers={"Retry-After": "5"}
        ) from exc


class AuthorRepository(SQLAlchemyAsyncRepository[Author]):
    model_type = Author


class NarratorRepository(SQLAlchemyAsyncRepository[Narrator]):
    model_type = Narrator


class GenreRepository(SQLAlchemyAsyncRepository[Genre]):
    model_type = Genre


class PeopleService(SQLAlchemyAsyncRepositoryService[Person]):
    """Authors or narrators, as the subclass names: lists, profiles, edits, lookups by name."""

    link: ClassVar[Column[Any]]
    """The association column that names the person beside each of their books."""

    @property
    def model(self) -> type[Person]:
        return cast("type[Person]", self.repository.model_type)

    def books_of(self, person_id: int) -> SearchFilters:
        """The list filter that finds the person's books."""
        raise NotImplementedError

    def _with_count(self) -> _AbstractLoad:
        count = select(func.count()).where(self.link == self.model.id).correlate(self.model).scalar_subquery()
        return with_expression(self.model.audiobooks_count, count)

    async def _counted(self, person_id: int) -> Person:
        """The person with their book count, read afresh (a flush resets the count to None)."""
        person = await self.get_one_or_none(
            self.model.id == person_id, load=[self._with_count()], execution_options={"populate_existing": True}
        )
        if person is None:
            raise NotFound(f"No {self.model.__name__.lower()} with id {person_id}.")
        return person

    async def list_people(self, q: str | None, page: LimitOffset) -> OffsetPagination[PersonRead]:
        """People with their audiobook counts, by name, those whose name holds ``q`` when given."""
        filters: list[StatementFilter] = [page]
        if q:
            filters.append(SearchFilter(field_name="name", value=q, ignore_case=True, escape_wildcards=True))
        people, total = await self.get_many_and_count(
            *filters,
            order_by=[func.lower(self.model.name).asc(), self.model.id.asc()],
            load=[self._with_count()],
            count_with_window_function=False,
        )
        return self.to_schema(people, total, filters=[page], schema_type=PersonRead)

    async def profile(self, person_id: int) -> PersonDetail:
        person = await self._counted(person_id)
        books = await AudiobookService(session=self.repository.session).list_books(
            self.books_of(person_id), "title", PROFILE_BOOKS
        )
        read = self.to_schema(person, schema_type=PersonRead)
        return PersonDetail(**msgspec.structs.asdict(read), audiobooks=list(books.items))

    async def edit(self, person_id: int, changes: PersonUpdate) -> PersonRead:
        person = await self._counted(person_id)
        for name, value in given_fields(changes).items():
            setattr(person, name, value)
        await self.repository.session.flush()
        return self.to_schema(await self._counted(person_id), schema_type=PersonRead)

    async def by_names(self, names: Sequence[str]) -> list[Person]:
        """The named people, creating those that do not exist yet."""
        wanted = clean_names(names, PERSON_NAME_MAX_LENGTH)
        if not wanted:
            return []
        found = await self.get_many(func.lower(self.model.name).in_([name.lower() for name in wanted]))
        by_name = {person.name.lower(): person for person in found}
        for name in wanted:
            if name.lower() not in by_name:
                by_name[name.lower()] = self.model(name=name)
                self.repository.session.add(by_name[name.lower()])
        await self.repository.session.flush()
        return [by_name[name.lower()] for name in wanted]


class AuthorService(PeopleService[Author]):
    repository_type = AuthorRepository
    link = audiobook_author.c.author_id

    def books_of(self, person_id: int) -> SearchFilters:
        return SearchFilters(author_id=person_id)


class NarratorService(PeopleService[Narrator]):
    repository_type = NarratorRepository
    link = audiobook_narrator.c.narrator_id

    def books_of(self, person_id: int) -> SearchFilters:
        return SearchFilters(narrator_id=person_id)


class GenreService(SQLAlchemyAsyncRepositoryService[Genre]):
    repository_type = GenreRepository

    async def with_counts(self) -> list[GenreRead]:
        """Every genre with its number of audiobooks, by name."""
        count = select(func.count()).where(audiobook_genre.c.genre_id == Genre.id).correlate(Genre).scalar_subquery()
        genres = await self.get_many(order_by=Genre.name.asc(), load=[with_expression(Genre.audiobooks_count, count)])
        return list(self.to_schema(genres, schema_type=GenreRead).items)

    async def by_names(self, names: Sequence[str]) -> list[Genre]:
        """The named genres (matched by slug), creating those that do not exist yet."""
        wanted = clean_names(names, GENRE_NAME_MAX_LENGTH)
        if not wanted:
            return []
        slugs = {slugify(name): name for name in wanted}
        found = {genre.slug: genre for genre in await self.get_many(Genre.slug.in_(slugs))}
        for slug, name in slugs.items():
            if slug not in found:
                found[slug] = Genre(name=name, slug=slug)
                self.repository.session.add(found[slug])
        await self.repository.session.flush()
        return [found[slug] for slug in slugs]


class AudiobookRepository(SQLAlchemyAsyncRepository[Audiobook]):
    model_type = Audiobook


class AudiobookService(SQLAlchemyAsyncRepositoryService[Audiobook]):
    repository_type = AudiobookRepository

    async def list_books(self, wanted: SearchFilters, sort: str, page: LimitOffset) -> OffsetPagination[AudiobookRead]:
        genre_id = None
        if wanted.genre is not None:
            genre_id = await self.repository.session.scalar(select(Genre.id).where(Genre.slug == wanted.genre))
            if genre_id is None:
                return self.to_schema([], 0, filters=[page], schema_type=AudiobookRead)
        books, total = await self.get_many_and_count(
            *catalog_filters(wanted, genre_id),
            *ordered_by(sort),
            page,
            load=LIST_LOAD,
            # A separate COUNT keeps the total right on pages past the end (a window count sees no rows there).
            count_with_window_function=False,
        )
        return self.to_schema(books, total, filters=[page], schema_type=AudiobookRead)

    async def book(self, audiobook_id: int) -> Audiobook:
        """The book with its people, genres and chapters; 404 when there is none."""
        return await self.get(audiobook_id, load=DETAIL_LOAD)

    async def detail(self, audiobook_id: int) -> AudiobookDetail:
        return self.to_schema(await self.book(audiobook_id), schema_type=AudiobookDetail)

    async def chapters(self, audiobook_id: int) -> list[ChapterRead]:
        return chapter_reads((await self.book(audiobook_id)).chapters)

    async def cover_key(self, audiobook_id: int) -> str:
        """Where the book's cover is stored; 404 when the book or its cover does not exist."""
        book = await self.get_one_or_none(id=audiobook_id)
        if book is None or not book.cover_key:
            raise NotFound("This audiobook has no cover.")
        return book.cover_key

    async def _editable(self, audiobook_id: int, editor: User) -> Audiobook:
        book = await self.book(audiobook_id)
        ensure_owner_or_curator(editor, book.uploaded_by_id, "this audiobook")
        return book

    async def edit(self, audiobook_id: int, changes: AudiobookUpdate, editor: User) -> AudiobookDetail:
        """Apply the fields ``changes`` gives (its uploader or a curator); people and genres by name."""
        book = await self._editable(audiobook_id, editor)
        fields = given_fields(changes)
        await self.set_related(
            book,
            authors=fields.pop("authors", None),
            narrators=fields.pop("narrators", None),
            genres=fields.pop("genres", None),
        )
        for name, value in fields.items():
            setattr(book, name, value)
        await self.repository.session.flush()
        await self.repository.session.refresh(book, attribute_names=["updated_at"])
        return self.to_schema(book, schema_type=AudiobookDetail)

    async def remove(self, audiobook_id: int, editor: User) -> None:
        """Delete the book (its uploader or a curator); its files leave storage once the deletion commits."""
        book = await self._editable(audiobook_id, editor)
        # Large demo catalogs share a few recordings; those stay for the other books.
        keys = [key for key in (book.audio_key, book.cover_key) if key and not key.startswith(SHARED_AUDIO_PREFIX)]
        session = self.repository.session
        await session.delete(book)
        await session.flush()
        if keys:
            await defer(session, DELETE_STORED_OBJECTS, keys)

    async def replace_chapters(
        self, audiobook_id: int, chapters: Sequence[ChapterWrite], editor: User
    ) -> list[ChapterRead]:
        """Replace the chapter list (its uploader or a curator): ordered, non-overlapping, within the book."""
        book = await self._editable(audiobook_id, editor)
        validate_chapters(chapters, book.duration_seconds)
        book.chapters.clear()
        # The unique (audiobook, number) rows must be gone before their replacements arrive.
        await self.repository.session.flush()
        book.chapters.extend(
            Chapter(
                chapter_number=number,
                title=chapter.title,
                start_time_seconds=round(chapter.start_time_seconds, 3),
                end_time_seconds=round(chapter.end_time_seconds, 3),
            )
            for number, chapter in enumerate(chapters, start=1)
        )
        await self.repository.session.flush()
        return chapter_reads(book.chapters)

    async def related(
        self, *, authors: Sequence[str], narrators: Sequence[str], genres: Sequence[str]
    ) -> dict[str, list[Any]]:
        """The ``authors``, ``narrators`` and ``genres`` of a new book by name, ready to pass to its constructor."""
        session = self.repository.session
        return {
            "authors": await AuthorService(session=session).by_names(authors),
            "narrators": await NarratorService(session=session).by_names(narrators),
            "genres": await GenreService(session=session).by_names(genres),
        }

    async def set_related(
        self,
        book: Audiobook,
        *,
        authors: Sequence[str] | None = None,
        narrators: Sequence[str] | None = None,
        genres: Sequence[str] | None = None,
    ) -> None:
        """Replace those of the book's people and genres that are given."""
        session = self.repository.session
        if authors is not None:
            book.authors = await AuthorService(session=session).by_names(authors)
        if narrators is not None:
            book.narrators = await NarratorService(session=session).by_names(narrators)
        if genres is not None:
            book.genres = await GenreService(session=session).by_names(genres)

    async def search(self, engine: SearchEngine, query: SearchQuery, zero_results: ZeroResultTally) -> SearchPage:
        """The engine's page of hits, each as the book it names with the engine's highlights.

        A search that found nothing is counted for the curators' report (``zero_results``).
        """
        with engine_errors_as_503():
            result = await engine.search(query)
        zero_results.note(query, result.total)
        if due := zero_results.take(only_if_due=True):
            await ZeroResultService(session=self.repository.session).add(due)
        # Each hit's list form comes with it from the index. A hit without one, or with one an older version
        # wrote (a list form since changed), is read from the database, until a reindex writes them anew.
        listed: dict[int, SearchItem] = {}
        for hit in result.hits:
            if hit.listing is not None:
                with suppress(msgspec.ValidationError):
                    listed[hit.id] = msgspec.convert(hit.listing | {"highlights": hit.highlights}, SearchItem)
        unlisted = [hit.id for hit in result.hits if hit.id not in listed]
        books = await book_cards(self.repository.session, unlisted) if unlisted else {}
        items = [
            listed.get(hit.id) or SearchItem(**msgspec.structs.asdict(books[hit.id]), highlights=hit.highlights)
            for hit in result.hits
            # Read from the database, a book deleted a moment ago is left out until the outbox drains.
            if hit.id in listed or hit.id in books
        ]
        # The engine's total, facets and timing as they are; its hits as the books, in the query's window.
        answer = msgspec.structs.asdict(result) | {"items": items, "limit": query.limit, "offset": query.offset}
        return msgspec.convert(answer, SearchPage)


def validate_chapters(chapters: Sequence[ChapterWrite], duration: float) -> None:
    """Ordered, non-overlapping, each within ``[0, duration]``; 422 naming the first bad entry."""
    if not chapters:
        raise Unprocessable(
            "A book needs at least one chapter.",
            errors=[FieldError(field="chapters", message="At least one chapter.")],
        )
    previous_end = 0.0
    for index, chapter in enumerate(chapters):
        problem = None
        if chapter.end_time_seconds <= chapter.start_time_seconds:
            problem = "ends before it starts"
        elif chapter.start_time_seconds < previous_end - 0.0005:
            problem = "starts before the previous chapter ends"
        elif chapter.end_time_seconds > duration + 0.0005:
            problem = f"ends after the book's duration ({duration:.3f} s)"
        if problem:
            raise Unprocessable(
                f"Chapter {index + 1} {problem}.",
                errors=[FieldError(field=f"chapters[{index}]", message=f"Chapter {problem}.")],
            )
        previous_end = chapter.end_time_seconds


def normalized_synonym_sets(sets: Sequence[Sequence[str]]) -> list[list[str]]:
    """Terms lowercased with single spaces, each once per set; 422 naming a set left with one term."""
    normalized: list[list[str]] = []
    for position, terms in enumerate(sets):
        unique = list(dict.fromkeys(" ".join(unicodedata.normalize("NFKC", term).lower().split()) for term in terms))
        if len(unique) < 2:
            raise Unprocessable(
                "A synonym set needs two different terms.",
                errors=[FieldError(field=f"sets[{position}]", message=f"Only {unique[0]!r} once lowercased.")],
            )
        normalized.append(unique)
    return normalized


class SearchSynonymsRepository(SQLAlchemyAsyncRepository[SearchSynonyms]):
    model_type = SearchSynonyms


class SynonymService(SQLAlchemyAsyncRepositoryService[SearchSynonyms]):
    """The synonym sets searches apply: the curators' list (or the shipped defaults) and its delivery."""

    repository_type = SearchSynonymsRepository

    async def current(self) -> SynonymSetsRead:
        saved = await self.repository.session.scalar(select(SearchSynonyms).order_by(SearchSynonyms.id.desc()).limit(1))
        if saved is None:
            return SynonymSetsRead(sets=default_synonym_sets(), is_default=True, updated_at=None)
        return SynonymSetsRead(sets=saved.sets, is_default=False, updated_at=saved.updated_at)

    async def replace(self, engine: SearchEngine, wanted: SynonymSetsWrite) -> SynonymSetsRead:
        """Save the sets and hand them to the engine, which applies them from the next search on."""
        sets = normalized_synonym_sets(wanted.sets)
        await self.repository.session.execute(delete(SearchSynonyms))
        saved = await self.create(SearchSynonyms(sets=sets))
        self.repository.session.info[STALE_KEY] = True  # cached searches were answered with the old sets
        # The drains hand the engine the saved list too (a node may have missed this call): taking their
        # turns, a drain that read the old list lands it before this call, never after it.
        for turn in drain_turns(engine):
            await take_turns(self.repository.session, turn)
        # The engine refusing or unreachable fails the request, and its rollback keeps the saved list.
        with engine_errors_as_503():
            await engine.set_synonyms(sets)
        return SynonymSetsRead(sets=saved.sets, is_default=False, updated_at=saved.updated_at)


ZERO_RESULT_FLUSH_SECONDS = 10.0
MAX_PENDING_ZERO_RESULT_QUERIES = 1000
MAX_ZERO_RESULT_QUERIES = 10_000
"""Rows the report keeps; beyond, the least searched (then the longest unseen) go first."""


def counted_query_text(text: str) -> str:
    """A search text as the report counts it: lowercased, spaces collapsed, cut to the column."""
    return " ".join(text.lower().split())[:SEARCH_REPORT_QUERY_MAX_LENGTH]


class ZeroResultTally:
    """A count, kept by each process, of the searches that found nothing, written to the database every few seconds.

    Searching is a read anyone may send; a database write per miss would let anonymous traffic drive
    the write load, so misses are summed here and ``take`` hands them over at most once per interval.
    Only a first page of text without filters counts: a filter that matches nothing is not a missing synonym.
    """

    def __init__(
        self, flush_seconds: float = ZERO_RESULT_FLUSH_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._counts: Counter[str] = Counter()
        self._flush_seconds = flush_seconds
        self._clock = clock
        self._taken_at = clock()

    def note(self, query: SearchQuery, total: int) -> None:
        if total or query.offset or query.filters != SearchFilters():
            return
        text = counted_query_text(query.text)
        # A flood of distinct texts between two writes keeps counting the ones already seen.
        if text and (text in self._counts or len(self._counts) < MAX_PENDING_ZERO_RESULT_QUERIES):
            self._counts[text] += 1

    def take(self, *, only_if_due: bool = False) -> dict[str, int]:
        """The counts since the last take (empty when ``only_if_due`` and the interval has not passed)."""
        if only_if_due and self._clock() - self._taken_at < self._flush_seconds:
            return {}
        counts, self._counts, self._taken_at = dict(self._counts), Counter(), self._clock()
        return counts


class ZeroResultRepository(SQLAlchemyAsyncRepository[ZeroResultQuery]):
    model_type = ZeroResultQuery


class ZeroResultService(SQLAlchemyAsyncRepositoryService[ZeroResultQuery]):
    """The report of searches that found nothing: counts added in bulk, the most frequent first."""

    repository_type = ZeroResultRepository

    async def add(self, counts: Mapping[str, int]) -> None:
        """Add ``counts`` to the stored ones in one statement, then drop what exceeds the report's size."""
        if not counts:
            return
        session = self.repository.session
        now = datetime.now(UTC)
        # Sorted keys lock rows in one order, so two processes adding at once cannot deadlock.
        rows = [
            {"query": text, "searches": n, "created_at": now, "updated_at": now} for text, n in sorted(counts.items())
        ]
        statement = upsert_into(session, ZeroResultQuery).values(rows)
        statement = statement.on_conflict_do_update(
            index_elements=[ZeroResultQuery.query],
            set_={
                "searches": ZeroResultQuery.searches + statement.excluded.searches,
                "updated_at": statement.excluded.updated_at,
            },
        )
        await session.execute(statement)
        if (excess := await self.count() - MAX_ZERO_RESULT_QUERIES) > 0:
            least = select(ZeroResultQuery.id).order_by(ZeroResultQuery.searches, ZeroResultQuery.updated_at)
            await session.execute(delete(ZeroResultQuery).where(ZeroResultQuery.id.in_(least.limit(excess))))

    async def top(self, page: LimitOffset, pending: ZeroResultTally) -> OffsetPagination[ZeroResultRead]:
        """The most frequent first, including this process's counts not yet written."""
        await self.add(pending.take())
        rows, total = await self.get_many_and_count(
            page,
            order_by=[ZeroResultQuery.searches.desc(), ZeroResultQuery.updated_at.desc(), ZeroResultQuery.id.asc()],
        )
        items = [
            ZeroResultRead(
                query=row.query, searches=row.searches, first_seen_at=row.created_at, last_seen_at=row.updated_at
            )
            for row in rows
        ]
        return OffsetPagination(items=items, total=total, limit=page.limit, offset=page.offset)

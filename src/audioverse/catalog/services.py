"""Catalog rules: listing with filters and sorts, people and genres by name, edits, chapters."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from advanced_alchemy.filters import ComparisonFilter, LimitOffset, OrderBy, SearchFilter, StatementFilter
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import Column, ColumnElement, Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.strategy_options import _AbstractLoad

from audioverse.catalog.models import (
    GENRE_NAME_MAX_LENGTH,
    PERSON_NAME_MAX_LENGTH,
    Audiobook,
    Author,
    Chapter,
    Genre,
    Narrator,
    audiobook_author,
    audiobook_genre,
    audiobook_narrator,
)
from audioverse.catalog.schemas import ChapterWrite
from audioverse.errors import FieldError, Unprocessable
from search.query import SearchFilters

SORTABLE = ("title", "release_date", "duration_seconds", "average_rating", "play_count", "created_at")
LIST_LOAD: list[_AbstractLoad] = [
    selectinload(Audiobook.authors),
    selectinload(Audiobook.narrators),
    selectinload(Audiobook.genres),
]
DETAIL_LOAD: list[_AbstractLoad] = [*LIST_LOAD, selectinload(Audiobook.chapters)]
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


@dataclass(frozen=True)
class AudiobookQuery:
    """The list endpoint's filters (the same as search's), sort and page, already typed and validated."""

    filters: SearchFilters = field(default_factory=SearchFilters)
    sort: str = "-created_at"
    limit: int = 20
    offset: int = 0

    def statement_filters(self) -> list[StatementFilter | ColumnElement[bool]]:
        wanted = self.filters
        filters: list[StatementFilter | ColumnElement[bool]] = []
        if wanted.genre is not None:
            filters.append(Audiobook.genres.any(Genre.slug == wanted.genre))
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
        sort_column = self.sort.removeprefix("-")
        direction: Literal["asc", "desc"] = "desc" if self.sort.startswith("-") else "asc"
        # Rows without a value (no release date) go last either way; ids break ties so pages are stable.
        filters += [
            OrderBy(field_name=sort_column, sort_order=direction, nulls="last"),
            OrderBy(field_name="id", sort_order=direction),
            LimitOffset(limit=self.limit, offset=self.offset),
        ]
        return filters


async def books_by_id(session: AsyncSession, ids: Sequence[int]) -> dict[int, Audiobook]:
    """The books among ``ids`` that exist, by id, each with its authors, narrators and genres."""
    if not ids:
        return {}
    books = await session.scalars(select(Audiobook).where(Audiobook.id.in_(ids)).options(*LIST_LOAD))
    return {book.id: book for book in books}


class AudiobookRepository(SQLAlchemyAsyncRepository[Audiobook]):
    model_type = Audiobook


class AudiobookService(SQLAlchemyAsyncRepositoryService[Audiobook]):
    repository_type = AudiobookRepository

    async def page(self, query: AudiobookQuery) -> tuple[Sequence[Audiobook], int]:
        # A separate COUNT keeps the total right on pages past the end (a window count sees no rows there).
        return await self.list_and_count(*query.statement_filters(), load=LIST_LOAD, count_with_window_function=False)

    async def detail(self, audiobook_id: int) -> Audiobook:
        return await self.get(audiobook_id, load=DETAIL_LOAD)


class AuthorRepository(SQLAlchemyAsyncRepository[Author]):
    model_type = Author


class NarratorRepository(SQLAlchemyAsyncRepository[Narrator]):
    model_type = Narrator


class Catalog:
    """Catalog workflows for one request's session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.audiobooks = AudiobookService(session=session)

    async def people_by_name(self, model: type[Person], names: Sequence[str]) -> list[Person]:
        """The named authors or narrators, creating those that do not exist yet."""
        wanted = clean_names(names, PERSON_NAME_MAX_LENGTH)
        if not wanted:
            return []
        found = await self.session.scalars(select(model).where(func.lower(model.name).in_([n.lower() for n in wanted])))
        by_name = {person.name.lower(): person for person in found}
        for name in wanted:
            if name.lower() not in by_name:
                person = model(name=name)
                self.session.add(person)
                by_name[name.lower()] = person
        await self.session.flush()
        return [by_name[name.lower()] for name in wanted]

    async def genres_by_name(self, names: Sequence[str]) -> list[Genre]:
        wanted = clean_names(names, GENRE_NAME_MAX_LENGTH)
        if not wanted:
            return []
        slugs = {slugify(name): name for name in wanted}
        found = {genre.slug: genre for genre in await self.session.scalars(select(Genre).where(Genre.slug.in_(slugs)))}
        for slug, name in slugs.items():
            if slug not in found:
                found[slug] = Genre(name=name, slug=slug)
                self.session.add(found[slug])
        await self.session.flush()
        return [found[slug] for slug in slugs]

    async def related(
        self, *, authors: Sequence[str], narrators: Sequence[str], genres: Sequence[str]
    ) -> dict[str, list[Any]]:
        """The ``authors``, ``narrators`` and ``genres`` of a new book, ready to pass to its constructor."""
        return {
            "authors": await self.people_by_name(Author, authors),
            "narrators": await self.people_by_name(Narrator, narrators),
            "genres": await self.genres_by_name(genres),
        }

    async def set_people_and_genres(
        self,
        audiobook: Audiobook,
        *,
        authors: Sequence[str] | None = None,
        narrators: Sequence[str] | None = None,
        genres: Sequence[str] | None = None,
    ) -> None:
        if authors is not None:
            audiobook.authors = await self.people_by_name(Author, authors)
        if narrators is not None:
            audiobook.narrators = await self.people_by_name(Narrator, narrators)
        if genres is not None:
            audiobook.genres = await self.genres_by_name(genres)

    async def replace_chapters(self, audiobook: Audiobook, chapters: Sequence[ChapterWrite]) -> None:
        validate_chapters(chapters, audiobook.duration_seconds)
        audiobook.chapters.clear()
        # The unique (audiobook, number) rows must be gone before their replacements arrive.
        await self.session.flush()
        audiobook.chapters.extend(
            Chapter(
                chapter_number=number,
                title=chapter.title,
                start_time_seconds=round(chapter.start_time_seconds, 3),
                end_time_seconds=round(chapter.end_time_seconds, 3),
            )
            for number, chapter in enumerate(chapters, start=1)
        )
        await self.session.flush()

    async def audiobook_count(self, model: type[Author] | type[Narrator], person_id: int) -> int:
        _, key = _link_of(model)
        return await self.session.scalar(select(func.count()).where(key == person_id)) or 0

    async def people_page(
        self, model: type[Author] | type[Narrator], *, q: str | None, limit: int, offset: int
    ) -> tuple[list[tuple[Author | Narrator, int]], int]:
        """People with their audiobook counts, by name; one query for the page, one for the total."""
        _, key = _link_of(model)
        count = select(func.count()).where(key == model.id).correlate(model).scalar_subquery()
        filters: list[StatementFilter] = []
        if q:
            filters.append(SearchFilter(field_name="name", value=q, ignore_case=True, escape_wildcards=True))
        base = select(model, count.label("audiobooks_count"))
        statement = base
        total_statement = select(func.count()).select_from(model)
        for statement_filter in filters:
            statement = statement_filter.append_to_statement(statement, model)
            total_statement = statement_filter.append_to_statement(total_statement, model)
        statement = statement.order_by(func.lower(model.name), model.id).limit(limit).offset(offset)
        rows = (await self.session.execute(statement)).all()
        total = await self.session.scalar(total_statement) or 0
        return [(row[0], row[1]) for row in rows], total

    async def genres_with_counts(self) -> list[tuple[Genre, int]]:
        count = select(func.count()).where(audiobook_genre.c.genre_id == Genre.id).correlate(Genre).scalar_subquery()
        rows = (await self.session.execute(select(Genre, count).order_by(Genre.name))).all()
        return [(row[0], row[1]) for row in rows]


def _link_of(model: type[Author] | type[Narrator]) -> tuple[Table, Column[int]]:
    if model is Author:
        return audiobook_author, audiobook_author.c.author_id
    return audiobook_narrator, audiobook_narrator.c.narrator_id


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

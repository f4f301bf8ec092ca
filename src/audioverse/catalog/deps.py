"""Providers of the catalog's routes: its services, and the list and search parameters from the query string."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, get_args

from advanced_alchemy.extensions.litestar.providers import create_service_provider
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ValidationException
from litestar.openapi.spec import Example
from litestar.params import Parameter

from audioverse.accounts.auth import PUBLIC
from audioverse.catalog.services import (
    AudiobookService,
    AuthorService,
    GenreService,
    NarratorService,
    SynonymService,
    ZeroResultService,
)
from audioverse.db import SAME_FOR_EVERY_CALLER
from audioverse.errors import FieldError, Unprocessable
from audioverse.types import OptionalId, Page, text_query
from search.query import FACET_NAMES, FacetName, SearchFilters, SearchQuery, SortOption

PUBLIC_SHARED = PUBLIC | SAME_FOR_EVERY_CALLER
"""A catalog read anyone may make whose answer is the same whoever asks: signed-in callers share its cache."""

AUDIOBOOKS = {"audiobooks": Provide(create_service_provider(AudiobookService))}
AUTHORS = {"people": Provide(create_service_provider(AuthorService))}
NARRATORS = {"people": Provide(create_service_provider(NarratorService))}
GENRES = {"genres": Provide(create_service_provider(GenreService))}
SYNONYMS = {"synonyms": Provide(create_service_provider(SynonymService))}
ZERO_RESULTS = {"zero_result_queries": Provide(create_service_provider(ZeroResultService))}

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

_FACET_CHOICE = "(" + "|".join(get_args(FacetName)) + ")"
FACETS_PATTERN = f"^({_FACET_CHOICE}(,{_FACET_CHOICE})*)?$"


def parse_facets(facets: str | None) -> frozenset[Any]:
    names = frozenset(part.strip() for part in (facets or "").split(",") if part.strip())
    if unknown := names - FACET_NAMES:
        raise Unprocessable(
            f"Unknown facets: {', '.join(sorted(unknown))}.",
            errors=[FieldError(field="facets", message=f"Choose from {', '.join(sorted(FACET_NAMES))}.")],
        )
    return names


def provide_search_query(
    catalog_filters: NamedDependency[SearchFilters],
    page: NamedDependency[Page],
    q: Annotated[str, text_query(500, "Search text.")] = "",
    sort: Annotated[SortOption, Parameter(description="Order of the hits; relevance unless chosen.")] = "relevance",
    facets: Annotated[
        str | None,
        Parameter(
            pattern=FACETS_PATTERN,
            description=f"Comma list (no spaces) of facets to count: {', '.join(get_args(FacetName))}.",
            examples=[Example(value="genres,languages,duration")],
        ),
    ] = None,
) -> SearchQuery:
    """The engine query for the search endpoint's parameters, named as clients send them."""
    return SearchQuery(
        text=q, filters=catalog_filters, sort=sort, facets=parse_facets(facets), limit=page.limit, offset=page.offset
    )


SEARCH_QUERY = {**CATALOG_FILTERS, "engine_query": Provide(provide_search_query, sync_to_thread=False)}

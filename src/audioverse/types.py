"""Bounded input types every route shares: ids, the page window, and text without NUL characters."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

import annotated_types
import msgspec
from advanced_alchemy.filters import LimitOffset
from advanced_alchemy.service import OffsetPagination
from litestar.di import Provide
from litestar.params import Parameter

from audioverse.errors import NO_NUL_PATTERN, QUERY_TEXT_PATTERN, FieldError, Unprocessable
from search.query import MAX_PAGE_SIZE, MAX_RESULT_WINDOW

MAX_ID = 2**63 - 1
"""Ids are the database's signed 64-bit keys; a larger number can name nothing."""
ID_RANGE = annotated_types.Interval(ge=1, le=MAX_ID)

Id = Annotated[int, ID_RANGE, Parameter(schema_extra={"maximum": MAX_ID})]
BodyId = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
"""An id in a JSON body: bounded as a path id, so no number a client sends reaches the database unbounded."""
"""A path id. Litestar writes a lone integer bound into OpenAPI as a float (2**63 - 1 would read
as 2**63), hence the exact maximum restated."""
OptionalId = Annotated[int | None, ID_RANGE]
"""An id filter in the query string; ``Annotated[OptionalId, Parameter(description=...)]`` adds words."""

PageSize = Annotated[int, Parameter(ge=1, le=MAX_PAGE_SIZE, description=f"Page size (max {MAX_PAGE_SIZE}).")]
PageOffset = Annotated[
    int,
    Parameter(
        ge=0,
        le=MAX_RESULT_WINDOW - 1,
        description=f"Items to skip; `offset + limit` may not exceed {MAX_RESULT_WINDOW:,}.",
    ),
]

# NUL is the one character PostgreSQL text cannot hold; refusing it in the types keeps both
# profiles alike and every such request a 422 instead of a database error.
Text = Annotated[str, msgspec.Meta(pattern=NO_NUL_PATTERN)]
"""Any string a client sends in a body; narrow it with another ``msgspec.Meta`` (lengths)."""


def text_query(max_length: int, description: str | None = None, **constraints: Any) -> Any:
    """The ``Parameter`` of a string query parameter: bounded in length, UTF-8, without NUL.

    Litestar reads only one ``Parameter`` per query parameter and drops ``msgspec.Meta`` there, so
    the rule ``Text`` carries for bodies is spelt here for the query string.
    """
    return Parameter(pattern=QUERY_TEXT_PATTERN, max_length=max_length, description=description, **constraints)


Page = LimitOffset
"""Which slice of a list to answer with (advanced-alchemy's filter), never deeper than ``MAX_RESULT_WINDOW``."""

T = TypeVar("T")


class ListPage(msgspec.Struct, Generic[T]):
    """One page of any list: the wire shape ``{items, total, limit, offset}`` of every list route.

    Services answer advanced-alchemy's ``OffsetPagination`` (from ``get_many_and_count`` + ``to_schema``);
    this generic struct is its wire form because msgspec structs reach OpenAPI as named components
    with every field required, where the dataclass appears inline with all fields optional.
    """

    items: list[T]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, pagination: OffsetPagination[T]) -> ListPage[T]:
        """The wire page of a service's ``OffsetPagination``."""
        return cls(
            items=list(pagination.items), total=pagination.total, limit=pagination.limit, offset=pagination.offset
        )


def provide_page(limit: PageSize = 20, offset: PageOffset = 0) -> Page:
    """The ``limit`` and ``offset`` of every list and search, checked together against the window."""
    if offset + limit > MAX_RESULT_WINDOW:
        raise Unprocessable(
            f"Pages end at item {MAX_RESULT_WINDOW:,}: offset + limit = {offset + limit:,}. "
            "Narrow the query (filters, a search, another sort) instead of paging this deep.",
            errors=[FieldError(field="offset", message=f"offset + limit must not exceed {MAX_RESULT_WINDOW}.")],
        )
    return LimitOffset(limit=limit, offset=offset)


PAGE_DEPENDENCY = {"page": Provide(provide_page, sync_to_thread=False)}

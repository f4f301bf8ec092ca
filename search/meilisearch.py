"""The production search engine: Meilisearch through its async Python client, settings kept in code."""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx2
import msgspec
from meilisearch_python_sdk import AsyncClient
from meilisearch_python_sdk.errors import (
    MeilisearchApiError,
    MeilisearchCommunicationError,
    MeilisearchError,
    MeilisearchTimeoutError,
)
from meilisearch_python_sdk.json_handler import OrjsonHandler
from meilisearch_python_sdk.models.search import SearchParams, SearchResultsWithUID
from meilisearch_python_sdk.models.settings import (
    Faceting,
    FilterableAttributes,
    MeilisearchSettings,
    MinWordSizeForTypos,
    Pagination,
    TypoTolerance,
)
from meilisearch_python_sdk.models.task import TaskInfo

from search.documents import AudiobookDocument, PersonDocument, PersonKind, person_key
from search.engine import SearchEngineAccessDenied, SearchEngineError, SearchEngineUnavailable
from search.query import (
    MAX_FACET_VALUES,
    MAX_SUGGESTIONS,
    NO_SUGGESTIONS,
    ONE_TYPO_MIN_LENGTH,
    TWO_TYPOS_MIN_LENGTH,
    AudiobookSuggestion,
    FacetName,
    Highlights,
    PersonSuggestion,
    SearchFilters,
    SearchHit,
    SearchQuery,
    SearchResult,
    SortField,
    Suggestions,
    duration_bucket,
    parse_sort,
    result_window,
    synonym_map,
    title_words,
)

# Meilisearch stops counting at maxTotalHits, so it must exceed the largest catalog we serve
# (100,000+ books) for totals, facet counts and deep pages to stay exact. Counting cost grows
# with the matches, not with this bound, so a generous value costs nothing on small catalogs.
MAX_TOTAL_HITS = 1_000_000
DESCRIPTION_CROP_WORDS = 30
CROP_MARKER = "…"
# Private-use characters never occur in catalog text, so they mark matches unambiguously
# until the text around them has been HTML-escaped.
MATCH_START, MATCH_END = "\ue000", "\ue001"

FACET_ATTRIBUTES: dict[FacetName, str] = {
    "genres": "genres.slug",
    "languages": "language",
    "authors": "authors.id",
    "narrators": "narrators.id",
    "duration": "duration_bucket",
}
SORT_ATTRIBUTES: dict[SortField, str] = {
    "title": "title",
    "release_date": "release_day",
    "duration_seconds": "duration_seconds",
    "average_rating": "average_rating",
    "play_count": "play_count",
    "created_at": "created_at_us",
}
FILTERABLE_ATTRIBUTES: list[str | FilterableAttributes] = [
    "genres.slug",
    "authors.id",
    "narrators.id",
    "language",
    "duration_seconds",
    "duration_bucket",
    "release_day",
    "average_rating",
]
HIGHLIGHTED_ATTRIBUTES = ["title", "authors.name", "narrators.name", "description"]
TYPO_TOLERANCE = TypoTolerance(
    enabled=True,
    min_word_size_for_typos=MinWordSizeForTypos(one_typo=ONE_TYPO_MIN_LENGTH, two_typos=TWO_TYPOS_MIN_LENGTH),
)
AUDIOBOOK_SETTINGS = MeilisearchSettings(
    searchable_attributes=["title", "series", "authors.name", "narrators.name", "subtitle", "description"],
    filterable_attributes=FILTERABLE_ATTRIBUTES,
    sortable_attributes=sorted(SORT_ATTRIBUTES.values()),
    # An explicit sort orders all matches (the default puts it after attribute, where relevance would
    # still override it); without one the rule is inert. Popularity and rating then break ties.
    ranking_rules=[
        "sort",
        "words",
        "typo",
        "proximity",
        "attribute",
        "exactness",
        # Of books that match alike, the one whose title adds fewest words to the match comes first:
        # "Dracula" before "Dracula, Volume 2" or a study titled "Dracula and its critics".
        "title_words:asc",
        "play_count:desc",
        "average_rating:desc",
    ],
    typo_tolerance=TYPO_TOLERANCE,
    faceting=Faceting(max_values_per_facet=MAX_FACET_VALUES, sort_facet_values_by={"*": "count"}),
    pagination=Pagination(max_total_hits=MAX_TOTAL_HITS),
)
PEOPLE_SETTINGS = MeilisearchSettings(
    searchable_attributes=["name"],
    filterable_attributes=["kind"],
    ranking_rules=["words", "typo", "proximity", "attribute", "exactness", "audiobooks_count:desc"],
    typo_tolerance=TYPO_TOLERANCE,
)


def quoted(value: str) -> str:
    """A Meilisearch filter string literal: whatever ``value`` holds stays one literal."""
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def number(value: float) -> str:
    """A float as Meilisearch's filter grammar reads it: it stops at the `+` of `1e+300`, so none."""
    return repr(float(value)).replace("e+", "e")


def filter_expressions(filters: SearchFilters) -> list[str | list[str]]:
    """The filters as Meilisearch expressions, all of which must hold.

    Values are converted to their declared type before formatting, so a caller that slipped a string
    into a numeric filter gets a ``ValueError`` rather than a filter of its own making.
    """
    expressions: list[str | list[str]] = []
    if filters.genre is not None:
        expressions.append(f"genres.slug = {quoted(filters.genre)}")
    if filters.author_id is not None:
        expressions.append(f"authors.id = {int(filters.author_id)}")
    if filters.narrator_id is not None:
        expressions.append(f"narrators.id = {int(filters.narrator_id)}")
    if filters.language is not None:
        expressions.append(f"language = {quoted(filters.language)}")
    if filters.duration_min is not None:
        expressions.append(f"duration_seconds >= {number(filters.duration_min)}")
    if filters.duration_max is not None:
        expressions.append(f"duration_seconds <= {number(filters.duration_max)}")
    if filters.released_after is not None:
        expressions.append(f"release_day >= {filters.released_after.toordinal()}")
    if filters.released_before is not None:
        expressions.append(f"release_day <= {filters.released_before.toordinal()}")
    if filters.min_rating is not None:
        expressions.append(f"average_rating >= {number(filters.min_rating)}")
    return expressions


def marked_html(text: str) -> str:
    """Escape ``text`` for HTML, then turn the match markers into ``<mark>`` tags."""
    return html.escape(text).replace(MATCH_START, "<mark>").replace(MATCH_END, "</mark>")


# Browsing without words by relevance is by popularity: the ranking rules that order matches by
# their text (title_words among them) would otherwise decide.
BROWSE_ORDER = ["play_count:desc", "average_rating:desc"]


def sort_expressions(query: SearchQuery) -> list[str] | None:
    """Meilisearch's sort for ``query``: its own order, popularity when it browses, else relevance."""
    sort = parse_sort(query.sort)
    if sort is not None:
        return [f"{SORT_ATTRIBUTES[sort[0]]}:{'desc' if sort[1] else 'asc'}"]
    return None if query.text.strip() else BROWSE_ORDER


def audiobook_payload(document: AudiobookDocument) -> dict[str, Any]:
    """The JSON Meilisearch stores: the document plus the numbers it filters, sorts and facets on."""
    payload: dict[str, Any] = msgspec.to_builtins(document)
    payload["release_day"] = document.release_day
    payload["created_at_us"] = document.created_at_microseconds
    payload["duration_bucket"] = duration_bucket(document.duration_seconds)
    payload["title_words"] = title_words(document.title)
    return payload


def person_payload(person: PersonDocument) -> dict[str, Any]:
    payload: dict[str, Any] = msgspec.to_builtins(person)
    payload["key"] = person.key
    return payload


def highlights_from(formatted: dict[str, Any]) -> Highlights:
    return Highlights(
        title=marked_html(formatted.get("title", "")),
        authors=[marked_html(person["name"]) for person in formatted.get("authors", [])],
        narrators=[marked_html(person["name"]) for person in formatted.get("narrators", [])],
        description=marked_html(formatted.get("description", "")),
    )


UNAUTHORIZED = 401
FORBIDDEN = 403


def api_error(exc: MeilisearchApiError, action: str) -> SearchEngineError:
    """The port's error for an answer Meilisearch gave, worded so an operator knows what to fix."""
    reason = f"{exc.status_code} {exc.code}".strip()
    if exc.status_code == UNAUTHORIZED:
        return SearchEngineAccessDenied(f"Meilisearch requires an API key and none is configured ({reason})")
    if exc.status_code == FORBIDDEN:
        return SearchEngineAccessDenied(f"the Meilisearch API key was refused ({reason})")
    if exc.code == "index_not_found":
        # Until configure() runs against a reachable engine the index does not exist; searches then wait.
        return SearchEngineUnavailable(f"Meilisearch has no such index yet ({action}: {reason})")
    return SearchEngineError(f"Meilisearch refused the request ({action}): {exc}")


@contextmanager
def engine_errors(action: str) -> Iterator[None]:
    """Re-raise the client's errors as the port's, keeping the cause."""
    try:
        yield
    except (MeilisearchCommunicationError, httpx2.TransportError) as exc:
        raise SearchEngineUnavailable(f"Meilisearch is unreachable ({action}): {exc}") from exc
    except MeilisearchTimeoutError as exc:
        raise SearchEngineError(f"Meilisearch did not finish in time ({action}): {exc}") from exc
    except MeilisearchApiError as exc:
        raise api_error(exc, action) from exc
    except MeilisearchError as exc:
        # The client wraps a connection lost mid-request (a read or write error) in its generic error.
        if isinstance(exc.__cause__, httpx2.TransportError):
            raise SearchEngineUnavailable(f"Meilisearch is unreachable ({action}): {exc.__cause__!r}") from exc
        raise SearchEngineError(f"Meilisearch refused the request ({action}): {exc}") from exc
    except httpx2.HTTPError as exc:
        raise SearchEngineError(f"Meilisearch refused the request ({action}): {exc}") from exc


class MeilisearchEngine:
    """The ``SearchEngine`` port on a Meilisearch server.

    ``index`` names the live audiobook index; people live in ``<index>_people`` and a rebuild
    happens in ``<index>_staging`` and ``<index>_people_staging``, swapped in by one Meilisearch task.
    """

    name = "meilisearch"

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        index: str = "audiobooks",
        request_timeout_seconds: int = 10,
        task_timeout_seconds: float = 300.0,
    ) -> None:
        # Meilisearch streams compressed responses in chunks, which on a kept-alive connection stall on
        # delayed ACKs: ~44 ms per search with highlights against ~2 ms uncompressed (measured, 1.21).
        # orjson through the client's own handler: the standard json module took a ninth of a reindex's
        # Python time encoding documents (profiled at 100k books).
        self._client = AsyncClient(
            url,
            api_key,
            timeout=request_timeout_seconds,
            custom_headers={"Accept-Encoding": "identity"},
            json_handler=OrjsonHandler(),
        )
        self._task_timeout_ms = int(task_timeout_seconds * 1000)
        self.audiobooks_index = index
        self.people_index = f"{index}_people"
        self._staging_audiobooks_index = f"{index}_staging"
        self._staging_people_index = f"{index}_people_staging"

    async def configure(self) -> None:
        # Updating settings creates a missing index and is a no-op when nothing changed.
        with engine_errors("configuring the indexes"):
            await self._apply_settings(self.audiobooks_index, self.people_index)

    async def upsert(self, documents: Sequence[AudiobookDocument]) -> None:
        if documents:
            targets = await self._write_targets(self.audiobooks_index, self._staging_audiobooks_index)
            await self._add(targets, [audiobook_payload(document) for document in documents], primary_key="id")

    async def delete(self, ids: Sequence[int]) -> None:
        if ids:
            targets = await self._write_targets(self.audiobooks_index, self._staging_audiobooks_index)
            await self._delete(targets, [str(int(book_id)) for book_id in ids])

    async def upsert_people(self, people: Sequence[PersonDocument]) -> None:
        if people:
            targets = await self._write_targets(self.people_index, self._staging_people_index)
            await self._add(targets, [person_payload(person) for person in people], primary_key="key")

    async def delete_people(self, kind: PersonKind, ids: Sequence[int]) -> None:
        if ids:
            targets = await self._write_targets(self.people_index, self._staging_people_index)
            await self._delete(targets, [person_key(kind, person_id) for person_id in ids])

    async def search(self, query: SearchQuery) -> SearchResult:
        # Page mode makes Meilisearch count every match exactly; an offset that is not a whole
        # number of pages is served from one larger first page.
        window = result_window(query)
        if query.offset % query.limit == 0:
            page, hits_per_page, skip = query.offset // query.limit + 1, query.limit, 0
        else:
            page, hits_per_page, skip = 1, window, query.offset
        with engine_errors("searching"):
            # Frequency drops the most common words first, so an added "audiobook" or a misspelt short
            # word ("moby dik") lowers a book's rank instead of emptying the result. When the words it
            # keeps find nothing ("jane eyre full audiobook"), dropping from the end finds what the
            # listener began with.
            for strategy in ("frequency", "last"):
                results = await self._client.index(self.audiobooks_index).search(
                    query.text,
                    page=page,
                    hits_per_page=hits_per_page,
                    filter=filter_expressions(query.filters) or None,
                    sort=sort_expressions(query),
                    facets=[FACET_ATTRIBUTES[name] for name in sorted(query.facets)] or None,
                    attributes_to_retrieve=["id", "listing"],
                    attributes_to_highlight=HIGHLIGHTED_ATTRIBUTES,
                    attributes_to_crop=["description"],
                    crop_length=DESCRIPTION_CROP_WORDS,
                    crop_marker=CROP_MARKER,
                    highlight_pre_tag=MATCH_START,
                    highlight_post_tag=MATCH_END,
                    matching_strategy=strategy,
                )
                if results.total_hits or len(query.text.split()) < 2:
                    break
        distribution = results.facet_distribution or {}
        return SearchResult(
            hits=[
                SearchHit(
                    id=int(hit["id"]),
                    highlights=highlights_from(hit.get("_formatted", {})),
                    listing=hit.get("listing"),
                )
                for hit in results.hits[skip:]
            ],
            total=results.total_hits or 0,
            facets={name: dict(distribution.get(FACET_ATTRIBUTES[name], {})) for name in query.facets},
            processing_time_ms=results.processing_time_ms,
        )

    async def suggest(self, text: str, limit: int = 5) -> Suggestions:
        if not text.strip():
            return NO_SUGGESTIONS
        limit = max(1, min(limit, MAX_SUGGESTIONS))
        queries = [
            SearchParams(
                index_uid=self.audiobooks_index,
                q=text,
                limit=limit,
                attributes_to_retrieve=["id", "title"],
                matching_strategy="all",
            ),
            *(
                SearchParams(
                    index_uid=self.people_index,
                    q=text,
                    limit=limit,
                    filter=f"kind = {quoted(kind)}",
                    attributes_to_retrieve=["id", "name"],
                    matching_strategy="all",
                )
                for kind in ("author", "narrator")
            ),
        ]
        with engine_errors("suggesting"):
            results = await self._client.multi_search(queries)
        if not isinstance(results, list):  # pragma: no cover - only federated searches return one result
            raise SearchEngineError("Meilisearch answered a multi-search with a federated result")
        books, authors, narrators = (self._hits(result) for result in results)
        return Suggestions(
            audiobooks=[AudiobookSuggestion(id=int(hit["id"]), title=hit["title"]) for hit in books],
            authors=[PersonSuggestion(id=int(hit["id"]), name=hit["name"]) for hit in authors],
            narrators=[PersonSuggestion(id=int(hit["id"]), name=hit["name"]) for hit in narrators],
        )

    async def set_synonyms(self, sets: Sequence[Sequence[str]]) -> None:
        with engine_errors("updating the synonyms"):
            targets = await self._write_targets(self.audiobooks_index, self._staging_audiobooks_index)
            targets += await self._write_targets(self.people_index, self._staging_people_index)
            await self._update_synonyms(targets, synonym_map(sets))

    async def count(self) -> int:
        with engine_errors("counting documents"):
            stats = await self._client.index(self.audiobooks_index).get_stats()
        return stats.number_of_documents

    async def create_staging_index(self) -> None:
        await self.drop_staging()
        with engine_errors("creating the staging indexes"):
            await self._apply_settings(self._staging_audiobooks_index, self._staging_people_index)
            # Synonyms are curated in the database, not kept in code: the rebuild carries the live ones over.
            synonyms = await self._client.index(self.audiobooks_index).get_synonyms()
            await self._update_synonyms([self._staging_audiobooks_index, self._staging_people_index], synonyms or {})

    async def load_staging(
        self, documents: Sequence[AudiobookDocument] = (), people: Sequence[PersonDocument] = ()
    ) -> None:
        await self._require_staging()
        if documents:
            payload = [audiobook_payload(document) for document in documents]
            await self._add([self._staging_audiobooks_index], payload, primary_key="id")
        if people:
            await self._add([self._staging_people_index], [person_payload(person) for person in people], "key")

    async def swap_in_staging(self) -> None:
        await self._require_staging()
        with engine_errors("swapping in the staging indexes"):
            task = await self._client.swap_indexes(
                [
                    (self.audiobooks_index, self._staging_audiobooks_index),
                    (self.people_index, self._staging_people_index),
                ]
            )
            await self._wait(task)
        # After the swap the staging names hold the previous live indexes.
        await self.drop_staging()

    async def drop_staging(self) -> None:
        with engine_errors("dropping the staging indexes"):
            for uid in (self._staging_audiobooks_index, self._staging_people_index):
                await self._client.delete_index_if_exists(uid)

    async def health(self) -> None:
        # GET /health answers without a key, so it would call an engine that refuses every search healthy;
        # an empty search on the live index goes through the same key, action and index as real searches.
        with engine_errors("checking health"):
            await self._client.index(self.audiobooks_index).search("", limit=0, attributes_to_retrieve=["id"])

    async def close(self) -> None:
        await self._client.aclose()

    async def _apply_settings(self, audiobooks_uid: str, people_uid: str) -> None:
        tasks = [
            await self._client.index(audiobooks_uid).update_settings(AUDIOBOOK_SETTINGS),
            await self._client.index(people_uid).update_settings(PEOPLE_SETTINGS),
        ]
        await self._wait(*tasks)

    async def _update_synonyms(self, uids: list[str], synonyms: dict[str, list[str]]) -> None:
        await self._wait(*[await self._client.index(uid).update_synonyms(synonyms) for uid in uids])

    async def _write_targets(self, live_uid: str, staging_uid: str) -> list[str]:
        """The live index, plus the staging one while a rebuild is under way."""
        with engine_errors("looking for a staging index"):
            staging = await self._exists(staging_uid)
        return [live_uid, staging_uid] if staging else [live_uid]

    async def _require_staging(self) -> None:
        with engine_errors("looking for a staging index"):
            staging = await self._exists(self._staging_audiobooks_index)
        if not staging:
            raise SearchEngineError("there is no staging index; call create_staging_index() first")

    async def _exists(self, uid: str) -> bool:
        # Not get_raw_index(): it reads a refusal (401, 403) as the index's description and fails parsing it.
        try:
            await self._client.index(uid).fetch_info()
        except MeilisearchApiError as exc:
            if exc.code == "index_not_found":
                return False
            raise
        return True

    async def _add(self, uids: list[str], payload: list[dict[str, Any]], primary_key: str) -> None:
        with engine_errors("adding documents"):
            tasks = [await self._client.index(uid).add_documents(payload, primary_key=primary_key) for uid in uids]
            await self._wait(*tasks)

    async def _delete(self, uids: list[str], keys: list[str]) -> None:
        with engine_errors("deleting documents"):
            tasks = [await self._client.index(uid).delete_documents(keys) for uid in uids]
            await self._wait(*tasks)

    async def _wait(self, *tasks: TaskInfo) -> None:
        """Return once every task succeeded; raise with Meilisearch's own reason if one did not."""
        for task in tasks:
            result = await self._client.wait_for_task(task.task_uid, timeout_in_ms=self._task_timeout_ms)
            if result.status != "succeeded":
                error = result.error or {}
                raise SearchEngineError(
                    f"Meilisearch task {task.task_uid} ({result.task_type}) {result.status}: "
                    f"{error.get('code', 'unknown')}: {error.get('message', 'no reason given')}"
                )

    @staticmethod
    def _hits(result: SearchResultsWithUID[Any]) -> list[dict[str, Any]]:
        hits: list[dict[str, Any]] = result.hits
        return hits

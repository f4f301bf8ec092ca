"""The embedded search engine: tantivy in-process, its index on disk, rebuilt beside the live one."""

from __future__ import annotations

import fcntl
import html
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, TypeVar

import anyio
import anyio.to_thread
import msgspec
import tantivy
from rapidfuzz.distance import OSA
from rapidfuzz.process import extract_iter
from tantivy import Occur, Order, Query

from search.documents import AudiobookDocument, PersonDocument, PersonKind, person_key
from search.engine import SearchEngineError, SearchEngineUnavailable
from search.query import (
    DURATION_BUCKETS,
    MAX_FACET_VALUES,
    MAX_SUGGESTIONS,
    NO_SUGGESTIONS,
    WORD,
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
    parse_sort,
    result_window,
    synonym_map,
    typo_budget,
)

T = TypeVar("T")

ANALYZER = "catalog"
# Relative weight of a match in each field; the order mirrors Meilisearch's searchable attributes.
FIELD_BOOSTS: dict[str, float] = {
    "title": 8.0,
    "series": 6.0,
    "authors": 5.0,
    "narrators": 4.0,
    "subtitle": 2.0,
    "description": 1.0,
}
# A typo'd or prefix match scores a constant, below an exact match of the same word in the same field.
LOOSE_MATCH_WEIGHT = 0.5
# What each matched word adds to a book's score: above any sum of BM25 scores, so the number of
# query words a book matches ranks first, as Meilisearch's "words" rule does.
MATCHED_WORD_SCORE = 10_000.0
# The shortest part a typed word is split into when looking for it as two words ("bel" + "ami").
MIN_SPLIT_PART = 2
Synonyms = Mapping[tuple[str, ...], Sequence[tuple[str, ...]]]
"""A term, as the words the analyzer makes of it, mapped to the terms that stand for it."""
NO_SYNONYMS: Synonyms = MappingProxyType({})
# Let a word matching in several fields score a little above one matching in just its best field.
FIELD_TIE_BREAKER = 0.1
SORT_FIELDS: dict[SortField, str] = {
    "title": "title_sort",
    "release_date": "release_day",
    "duration_seconds": "duration_seconds",
    "average_rating": "average_rating",
    "play_count": "play_count",
    "created_at": "created_at_us",
}
FACET_FIELDS: dict[FacetName, str] = {
    "genres": "genre_slugs",
    "languages": "language",
    "authors": "author_ids",
    "narrators": "narrator_ids",
    "duration": "duration_seconds",
}
# Tantivy cuts each segment's term counts to this many before merging; above the number of distinct
# values any catalog facet has, every count is exact (tantivy reports doc_count_error_upper_bound 0).
FACET_SEGMENT_SIZE = 1_000_000
DESCRIPTION_SNIPPET_CHARS = 200
DESCRIPTION_CROP_WORDS = 30
CROP_MARKER = "…"
WHOLE_FIELD_CHARS = 100_000
SUGGESTION_WINDOW = 4
CURRENT_POINTER = "CURRENT"
DIRECTORY_LOCK = "LOCK"
GENERATION_PREFIX = "generation-"
MIN_WRITER_HEAP_BYTES = 15_000_000
SCHEMA_MISMATCH = "schema does not match"
"""What tantivy says when an index on disk has other fields than the schema it is opened with."""


def catalog_analyzer() -> tantivy.TextAnalyzer:
    """Words, lowercased and folded to ASCII so "Brontë" and "bronte" meet."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(64))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .build()
    )


def audiobook_schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("id", stored=True, indexed=True, fast=True)
    for field in FIELD_BOOSTS:
        builder.add_text_field(field, stored=field in HIGHLIGHTED_FIELDS, tokenizer_name=ANALYZER)
    builder.add_text_field("title_sort", fast=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("genre_slugs", fast=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("language", fast=True, tokenizer_name="raw", index_option="basic")
    for field in ("author_ids", "narrator_ids", "release_day", "play_count", "created_at_us"):
        builder.add_integer_field(field, indexed=True, fast=True)
    for field in ("duration_seconds", "average_rating"):
        builder.add_float_field(field, indexed=True, fast=True)
    builder.add_bytes_field("listing", stored=True)
    return builder.build()


def people_schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("key", tokenizer_name="raw", index_option="basic")
    builder.add_integer_field("id", stored=True)
    builder.add_text_field("name", stored=True, tokenizer_name=ANALYZER)
    builder.add_text_field("kind", tokenizer_name="raw", index_option="basic")
    builder.add_integer_field("audiobooks_count", fast=True)
    return builder.build()


HIGHLIGHTED_FIELDS = ("title", "authors", "narrators", "description")
# The duration buckets as a tantivy range aggregation, whose open ends are simply left out.
DURATION_RANGES = [
    {"key": bucket.label}
    | ({} if bucket.min_seconds is None else {"from": bucket.min_seconds})
    | ({} if bucket.max_seconds is None else {"to": bucket.max_seconds})
    for bucket in DURATION_BUCKETS
]
AUDIOBOOK_SCHEMA = audiobook_schema()
PEOPLE_SCHEMA = people_schema()


def audiobook_fields(book: AudiobookDocument) -> tantivy.Document:
    document = tantivy.Document()
    document.add_integer("id", book.id)
    document.add_text("title", book.title)
    document.add_text("title_sort", book.title.casefold())
    document.add_text("subtitle", book.subtitle)
    document.add_text("description", book.description)
    if book.series:
        document.add_text("series", book.series)
    for author in book.authors:
        document.add_text("authors", author.name)
        document.add_integer("author_ids", author.id)
    for narrator in book.narrators:
        document.add_text("narrators", narrator.name)
        document.add_integer("narrator_ids", narrator.id)
    for genre in book.genres:
        document.add_text("genre_slugs", genre.slug)
    document.add_text("language", book.language)
    document.add_float("duration_seconds", float(book.duration_seconds))
    document.add_float("average_rating", float(book.average_rating))
    document.add_integer("play_count", book.play_count)
    document.add_integer("created_at_us", book.created_at_microseconds)
    if book.release_day is not None:
        document.add_integer("release_day", book.release_day)
    if book.listing is not None:
        document.add_bytes("listing", msgspec.json.encode(book.listing))
    return document


def person_fields(person: PersonDocument) -> tantivy.Document:
    document = tantivy.Document()
    document.add_text("key", person.key)
    document.add_integer("id", person.id)
    document.add_text("name", person.name)
    document.add_text("kind", person.kind)
    document.add_integer("audiobooks_count", person.audiobooks_count)
    return document


def words_matching(tokens: Sequence[str], words: Iterable[str]) -> set[str]:
    """The ``words`` some query token matches the way the text query does.

    Within the token's typo budget (optimal string alignment: a swap of neighbours is one edit, as in
    tantivy's fuzzy query), the last token also as a prefix. Tantivy does not say which words matched;
    the highlighter needs them to mark every word of every hit's fields.
    """
    choices = list(words)
    matched: set[str] = set()
    for position, token in enumerate(tokens):
        budget = typo_budget(token)
        if position == len(tokens) - 1:
            lengths = range(max(1, len(token) - budget), len(token) + budget + 1)
            heads = [(word[:length], word) for word in choices for length in lengths]
        else:
            heads = [(word, word) for word in choices]
        # rapidfuzz compares in C++ and yields only the choices within the budget.
        found = extract_iter(token, [head for head, _ in heads], scorer=OSA.distance, score_cutoff=budget)
        matched.update(heads[index][1] for _, _, index in found)
    return matched


def text_query(
    schema: tantivy.Schema,
    tokens: Sequence[str],
    field_boosts: Mapping[str, float],
    *,
    every_word: bool = True,
    synonyms: Synonyms = NO_SYNONYMS,
) -> Query:
    """Each word matches some field: exactly (BM25), with typos, or as a prefix if it is the last.

    With ``every_word`` a book must match them all (suggestions as you type); without, a book
    matching more of the words ranks above one matching fewer, whatever their BM25, and a word
    that matches nothing ("moby dik", an added "audiobook") lowers no book's rank.
    """
    per_word: list[tuple[Occur, Query]] = []
    for position, token in enumerate(tokens):
        as_prefix = position == len(tokens) - 1
        budget = typo_budget(token)
        alternatives: list[Query] = []
        for field, boost in field_boosts.items():
            alternatives.append(Query.boost_query(Query.term_query(schema, field, token), boost))
            if budget or as_prefix:
                loose = Query.fuzzy_term_query(schema, field, token, distance=budget, prefix=as_prefix)
                alternatives.append(Query.const_score_query(loose, boost * LOOSE_MATCH_WEIGHT))
        if not every_word:
            alternatives += joined_and_split_forms(schema, tokens, position, field_boosts)
        alternatives += synonym_forms(schema, tokens, position, field_boosts, synonyms)
        word = Query.disjunction_max_query(alternatives, tie_breaker=FIELD_TIE_BREAKER)
        if every_word:
            per_word.append((Occur.Must, word))
        else:
            per_word += [(Occur.Should, Query.const_score_query(word, MATCHED_WORD_SCORE)), (Occur.Should, word)]
    return Query.boolean_query(per_word)


def joined_and_split_forms(
    schema: tantivy.Schema, tokens: Sequence[str], position: int, field_boosts: Mapping[str, float]
) -> list[Query]:
    """The other spellings of the word at ``position`` that Meilisearch also tries, exact only.

    Joined with a neighbour ("middle march" finds Middlemarch: each of the two words matches it) and
    split in two ("benhur" finds Ben-Hur, which the index holds as "ben" then "hur").
    """
    token = tokens[position]
    joined = [tokens[position - 1] + token] if position > 0 else []
    if position + 1 < len(tokens):
        joined.append(token + tokens[position + 1])
    splits: list[list[str | tuple[int, str]]] = [
        [token[:cut], token[cut:]] for cut in range(MIN_SPLIT_PART, len(token) - MIN_SPLIT_PART + 1)
    ]
    forms: list[Query] = []
    for field, boost in field_boosts.items():
        forms += [Query.boost_query(Query.term_query(schema, field, word), boost) for word in joined]
        forms += [Query.boost_query(Query.phrase_query(schema, field, parts), boost) for parts in splits]
    return forms


def synonym_forms(
    schema: tantivy.Schema,
    tokens: Sequence[str],
    position: int,
    field_boosts: Mapping[str, float],
    synonyms: Synonyms,
) -> list[Query]:
    """What the synonyms of each typed term covering the word at ``position`` match, exactly.

    A term of several words ("twenty one") covers each of them, so a book holding its synonym ("21")
    counts as matching every one of those words, as Meilisearch counts it.
    """
    longest = max(map(len, synonyms), default=0)
    forms: list[Query] = []
    for length in range(1, min(longest, len(tokens)) + 1):
        for start in range(max(0, position - length + 1), min(position, len(tokens) - length) + 1):
            for words in synonyms.get(tuple(tokens[start : start + length]), ()):
                for field, boost in field_boosts.items():
                    if len(words) == 1:
                        forms.append(Query.boost_query(Query.term_query(schema, field, words[0]), boost))
                    else:
                        forms.append(Query.boost_query(Query.phrase_query(schema, field, list(words)), boost))
    return forms


def filter_queries(filters: SearchFilters) -> list[Query]:
    """The filters as tantivy queries built from typed values: nothing in them is parsed."""
    schema = AUDIOBOOK_SCHEMA
    queries: list[Query] = []
    if filters.genre is not None:
        queries.append(Query.term_query(schema, "genre_slugs", str(filters.genre)))
    if filters.author_id is not None:
        queries.append(Query.term_query(schema, "author_ids", int(filters.author_id)))
    if filters.narrator_id is not None:
        queries.append(Query.term_query(schema, "narrator_ids", int(filters.narrator_id)))
    if filters.language is not None:
        queries.append(Query.term_query(schema, "language", str(filters.language)))
    if filters.duration_min is not None or filters.duration_max is not None:
        queries.append(
            _range(schema, "duration_seconds", tantivy.FieldType.Float, filters.duration_min, filters.duration_max)
        )
    if filters.released_after is not None or filters.released_before is not None:
        after, before = filters.released_after, filters.released_before
        queries.append(
            _range(
                schema,
                "release_day",
                tantivy.FieldType.Integer,
                None if after is None else after.toordinal(),
                None if before is None else before.toordinal(),
            )
        )
    if filters.min_rating is not None:
        queries.append(_range(schema, "average_rating", tantivy.FieldType.Float, filters.min_rating, None))
    return queries


def _range(
    schema: tantivy.Schema, field: str, field_type: tantivy.FieldType, lower: float | None, upper: float | None
) -> Query:
    return Query.range_query(schema, field, field_type, lower_bound=lower, upper_bound=upper)


def all_of(main: Query, filters: Iterable[Query]) -> Query:
    """``main`` restricted by ``filters``, which match without changing the score."""
    clauses = [(Occur.Must, Query.const_score_query(query, 0.0)) for query in filters]
    return Query.boolean_query([(Occur.Must, main), *clauses]) if clauses else main


class _Store:
    """One tantivy index on disk and its single writer."""

    def __init__(self, path: Path, schema: tantivy.Schema, writer_heap_bytes: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.index = tantivy.Index(schema, str(path), reuse=True)
        self.index.register_tokenizer(ANALYZER, catalog_analyzer())
        self.index.config_reader(reload_policy="Manual")
        self._writer_heap_bytes = writer_heap_bytes
        self._writer: tantivy.IndexWriter | None = None

    def apply(self, key_field: str, removals: Iterable[int | str], additions: Iterable[tantivy.Document]) -> None:
        """Remove documents by key and add new ones in one commit, visible to searchers on return."""
        if self._writer is None:
            self._writer = self.index.writer(heap_size=self._writer_heap_bytes, num_threads=1)
        writer = self._writer
        try:
            for key in removals:
                writer.delete_documents_by_term(key_field, key)
            for document in additions:
                writer.add_document(document)
            writer.commit()
        except BaseException:
            writer.rollback()
            raise
        self.index.reload()

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.wait_merging_threads()


class _Generation:
    """One complete index on disk, audiobooks and people built together; the unit that reindex swaps."""

    def __init__(self, path: Path, writer_heap_bytes: int) -> None:
        self.path = path
        self.audiobooks = _Store(path / "audiobooks", AUDIOBOOK_SCHEMA, writer_heap_bytes)
        self.people = _Store(path / "people", PEOPLE_SCHEMA, writer_heap_bytes)

    def upsert(self, books: Sequence[AudiobookDocument]) -> None:
        self.audiobooks.apply("id", [book.id for book in books], [audiobook_fields(book) for book in books])

    def delete(self, ids: Sequence[int]) -> None:
        self.audiobooks.apply("id", [int(book_id) for book_id in ids], [])

    def upsert_people(self, people: Sequence[PersonDocument]) -> None:
        self.people.apply("key", [person.key for person in people], [person_fields(person) for person in people])

    def delete_people(self, kind: PersonKind, ids: Sequence[int]) -> None:
        self.people.apply("key", [person_key(kind, person_id) for person_id in ids], [])

    def close(self) -> None:
        self.audiobooks.close()
        self.people.close()

    def discard(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)


class EmbeddedSearchEngine:
    """The ``SearchEngine`` port on tantivy, for the one-process profile.

    ``directory`` holds numbered generations of the index and a ``CURRENT`` file naming the live one.
    A rebuild writes the next generation while searches read the live one; the swap replaces
    ``CURRENT`` atomically (rename), then deletes the old generation. One engine per directory:
    tantivy allows a single writer, and this engine serializes all writes through one lock.
    Tantivy calls block, so they run in worker threads.
    """

    name = "embedded"

    def __init__(self, directory: Path | str, *, writer_heap_bytes: int = 64_000_000) -> None:
        self.directory = Path(directory)
        self._writer_heap_bytes = max(writer_heap_bytes, MIN_WRITER_HEAP_BYTES)
        self._analyzer = catalog_analyzer()
        self._write_lock = anyio.Lock()
        self._live: _Generation | None = None
        self._staging: _Generation | None = None
        self._directory_lock: IO[str] | None = None
        self._synonyms: Synonyms = NO_SYNONYMS

    async def configure(self) -> None:
        await self._live_generation()

    async def upsert(self, documents: Sequence[AudiobookDocument]) -> None:
        if documents:
            await self._write_everywhere(lambda generation: generation.upsert(documents))

    async def delete(self, ids: Sequence[int]) -> None:
        if ids:
            await self._write_everywhere(lambda generation: generation.delete(ids))

    async def upsert_people(self, people: Sequence[PersonDocument]) -> None:
        if people:
            await self._write_everywhere(lambda generation: generation.upsert_people(people))

    async def delete_people(self, kind: PersonKind, ids: Sequence[int]) -> None:
        if ids:
            await self._write_everywhere(lambda generation: generation.delete_people(kind, ids))

    async def search(self, query: SearchQuery) -> SearchResult:
        live = await self._live_generation()
        return await self._in_thread("searching", partial(self._search, live.audiobooks, query))

    async def suggest(self, text: str, limit: int = 5) -> Suggestions:
        tokens = self._analyzer.analyze(text)
        if not tokens:
            return NO_SUGGESTIONS
        live = await self._live_generation()
        limit = max(1, min(limit, MAX_SUGGESTIONS))
        return await self._in_thread("suggesting", partial(self._suggest, live, tokens, limit))

    async def set_synonyms(self, sets: Sequence[Sequence[str]]) -> None:
        # Terms are compared as the analyzer reads the index: "Twenty-One" is the words twenty, one.
        analyzed = [[" ".join(self._analyzer.analyze(term)) for term in terms] for terms in sets]
        self._synonyms = {
            tuple(term.split()): [tuple(other.split()) for other in others if other]
            for term, others in synonym_map(analyzed).items()
            if term and any(others)
        }

    async def count(self) -> int:
        live = await self._live_generation()
        return await self._in_thread("counting", lambda: live.audiobooks.index.searcher().num_docs)

    async def create_staging_index(self) -> None:
        await self._live_generation()
        async with self._write_lock:
            await self._in_thread("creating a staging index", self._replace_staging)

    async def load_staging(
        self, documents: Sequence[AudiobookDocument] = (), people: Sequence[PersonDocument] = ()
    ) -> None:
        async with self._write_lock:
            staging = self._require_staging()

            def load() -> None:
                if documents:
                    staging.upsert(documents)
                if people:
                    staging.upsert_people(people)

            await self._in_thread("loading the staging index", load)

    async def swap_in_staging(self) -> None:
        async with self._write_lock:
            staging = self._require_staging()
            await self._in_thread("swapping in the staging index", partial(self._point_current_at, staging.path))
            previous, self._live, self._staging = self._live, staging, None
            if previous is not None:
                await self._in_thread("dropping the previous index", previous.discard)

    async def drop_staging(self) -> None:
        async with self._write_lock:
            staging, self._staging = self._staging, None
            if staging is not None:
                await self._in_thread("dropping the staging index", staging.discard)

    async def health(self) -> None:
        live = await self._live_generation()
        pointer = self.directory / CURRENT_POINTER
        try:
            await self._in_thread("checking health", lambda: (pointer.stat(), live.audiobooks.index.searcher()))
        except (SearchEngineError, OSError) as exc:
            raise SearchEngineUnavailable(f"the embedded index at {self.directory} cannot answer: {exc}") from exc

    async def close(self) -> None:
        async with self._write_lock:
            for generation in (self._live, self._staging):
                if generation is not None:
                    await self._in_thread("closing the index writers", generation.close)
            self._live = self._staging = None
            if self._directory_lock is not None:
                # Closing the file releases the lock.
                self._directory_lock.close()
                self._directory_lock = None

    async def _live_generation(self) -> _Generation:
        if self._live is None:
            async with self._write_lock:
                if self._live is None:
                    self._live = await self._in_thread("opening the index", self._open_live)
        return self._live

    async def _write_everywhere(self, write: Callable[[_Generation], None]) -> None:
        """Apply a write to the live index and, during a rebuild, to the staging one too."""
        await self._live_generation()
        async with self._write_lock:
            # Read under the lock: a swap may have replaced the live generation while we waited.
            for generation in (self._live, self._staging):
                if generation is not None:
                    await self._in_thread("writing to the index", partial(write, generation))

    def _require_staging(self) -> _Generation:
        if self._staging is None:
            raise SearchEngineError("there is no staging index; call create_staging_index() first")
        return self._staging

    async def _in_thread(self, action: str, function: Callable[[], T]) -> T:
        try:
            return await anyio.to_thread.run_sync(function)
        except (ValueError, OSError) as exc:
            raise SearchEngineError(f"the embedded index failed ({action}): {exc}") from exc

    def _open_live(self) -> _Generation:
        """Open the generation ``CURRENT`` names (creating the first one), and clear abandoned ones."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_directory()
        pointer = self.directory / CURRENT_POINTER
        if pointer.exists():
            live_path = self.directory / pointer.read_text().strip()
        else:
            live_path = self._next_generation_path()
            live_path.mkdir()
            self._point_current_at(live_path)
        for path in self._generation_paths():
            if path != live_path:
                shutil.rmtree(path, ignore_errors=True)
        try:
            return _Generation(live_path, self._writer_heap_bytes)
        except ValueError as exc:
            if SCHEMA_MISMATCH not in str(exc):
                raise
        # Written by a version with other fields: unreadable now. Start empty rather than fail every search;
        # the app rebuilds an empty index from the database when it starts (a reindex does it too).
        fresh_path = self._next_generation_path()
        fresh_path.mkdir()
        self._point_current_at(fresh_path)
        shutil.rmtree(live_path, ignore_errors=True)
        return _Generation(fresh_path, self._writer_heap_bytes)

    def _lock_directory(self) -> None:
        """Hold the directory for this engine: a second writer, or its clean-up, would corrupt the index."""
        lock_file = (self.directory / DIRECTORY_LOCK).open("a")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            raise SearchEngineError(
                f"the index at {self.directory} is in use by another engine (the embedded profile runs in one process)"
            ) from None
        self._directory_lock = lock_file

    def _replace_staging(self) -> None:
        if self._staging is not None:
            self._staging.discard()
        path = self._next_generation_path()
        path.mkdir()
        self._staging = _Generation(path, self._writer_heap_bytes)

    def _generation_paths(self) -> list[Path]:
        return sorted(self.directory.glob(f"{GENERATION_PREFIX}*"))

    def _next_generation_path(self) -> Path:
        numbers = [int(path.name.removeprefix(GENERATION_PREFIX)) for path in self._generation_paths()]
        return self.directory / f"{GENERATION_PREFIX}{max(numbers, default=0) + 1}"

    def _point_current_at(self, generation_path: Path) -> None:
        """Replace ``CURRENT`` by rename, so a crash leaves either the old or the new pointer whole."""
        pointer = self.directory / CURRENT_POINTER
        draft = pointer.with_suffix(".next")
        with draft.open("w") as file:
            file.write(generation_path.name)
            file.flush()
            os.fsync(file.fileno())
        draft.replace(pointer)
        directory_handle = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory_handle)
        finally:
            os.close(directory_handle)

    def _search(self, store: _Store, query: SearchQuery) -> SearchResult:
        started = time.perf_counter()
        # tantivy reserves room for offset + limit hits up front; an unbounded window aborts the process.
        window = result_window(query)
        searcher = store.index.searcher()
        tokens = self._analyzer.analyze(query.text)
        if tokens:
            matcher = text_query(AUDIOBOOK_SCHEMA, tokens, FIELD_BOOSTS, every_word=False, synonyms=self._synonyms)
        elif WORD.search(query.text):
            # Only words too long to index (the analyzer drops them): nothing holds them, as on Meilisearch.
            matcher = Query.boolean_query([(Occur.Must, Query.all_query()), (Occur.MustNot, Query.all_query())])
        else:
            matcher = Query.all_query()
        restricted = all_of(matcher, filter_queries(query.filters))
        sort = parse_sort(query.sort)
        # tantivy reserves room for offset + limit hits, and a huge offset aborts the whole process;
        # past the last document every offset reads the same empty page.
        offset = min(query.offset, searcher.num_docs)
        if sort is not None:
            field, descending = sort
            result = searcher.search(
                restricted,
                limit=query.limit,
                offset=offset,
                order_by_field=SORT_FIELDS[field],
                order=Order.Desc if descending else Order.Asc,
            )
            addresses = [address for _, address in result.hits]
        else:
            # Browsing without words ranks by popularity, as Meilisearch's tie-breakers do.
            result = searcher.search(
                restricted, limit=min(window, offset + query.limit), order_by_field=None if tokens else "play_count"
            )
            addresses = self._break_ties(searcher, result.hits)[offset:]
        documents = [searcher.doc(address) for address in addresses]
        highlighter = _Highlighter(searcher, tokens, documents)
        hits = [
            SearchHit(id=document["id"][0], highlights=highlighter.highlights(document), listing=_listing(document))
            for document in documents
        ]
        facets = self._facets(searcher, restricted, query.facets) if query.facets else {}
        elapsed_ms = round((time.perf_counter() - started) * 1000)
        total: int = result.count  # type: ignore[attr-defined]  # the stub leaves out what search(count=True) sets
        return SearchResult(hits=hits, total=total, facets=facets, processing_time_ms=elapsed_ms)

    @staticmethod
    def _break_ties(searcher: tantivy.Searcher, hits: list[tuple[Any, tantivy.DocAddress]]) -> list[tantivy.DocAddress]:
        """Order equally ranked hits by play count, then rating (within the fetched window)."""
        addresses = [address for _, address in hits]
        plays = searcher.fast_field_values("play_count", addresses)
        ratings = searcher.fast_field_values("average_rating", addresses)
        ranked = sorted(
            zip(hits, plays, ratings, strict=True),
            key=lambda item: (-round(float(item[0][0]), 4), -(item[1] or 0), -(item[2] or 0.0)),
        )
        return [hit[1] for hit, _, _ in ranked]

    @staticmethod
    def _facets(searcher: tantivy.Searcher, query: Query, names: Iterable[FacetName]) -> dict[str, dict[str, int]]:
        aggregations: dict[str, Any] = {}
        for name in names:
            if name == "duration":
                aggregations[name] = {"range": {"field": FACET_FIELDS[name], "ranges": DURATION_RANGES}}
            else:
                aggregations[name] = {
                    "terms": {"field": FACET_FIELDS[name], "size": MAX_FACET_VALUES, "segment_size": FACET_SEGMENT_SIZE}
                }
        counted = searcher.aggregate(query, aggregations)
        return {
            name: {
                str(bucket["key"]): bucket["doc_count"] for bucket in counted[name]["buckets"] if bucket["doc_count"]
            }
            for name in aggregations
        }

    def _suggest(self, live: _Generation, tokens: list[str], limit: int) -> Suggestions:
        books = live.audiobooks.index.searcher()
        book_hits = books.search(text_query(AUDIOBOOK_SCHEMA, tokens, FIELD_BOOSTS), limit=limit).hits
        book_documents = [books.doc(address) for address in self._break_ties(books, book_hits)]
        people = live.people.index.searcher()
        by_name = text_query(PEOPLE_SCHEMA, tokens, {"name": 1.0})
        found: dict[str, list[PersonSuggestion]] = {}
        for kind in ("author", "narrator"):
            kind_only = Query.term_query(PEOPLE_SCHEMA, "kind", kind)
            # A wider window than asked, so people tied on the text are chosen by their number of books.
            hits = people.search(all_of(by_name, [kind_only]), limit=limit * SUGGESTION_WINDOW).hits
            counts = people.fast_field_values("audiobooks_count", [address for _, address in hits])
            ranked = sorted(zip(hits, counts, strict=True), key=lambda item: (-item[0][0], -(item[1] or 0)))
            documents = [people.doc(address) for (_, address), _ in ranked[:limit]]
            found[kind] = [PersonSuggestion(id=document["id"][0], name=document["name"][0]) for document in documents]
        return Suggestions(
            audiobooks=[
                AudiobookSuggestion(id=document["id"][0], title=document["title"][0]) for document in book_documents
            ],
            authors=found["author"],
            narrators=found["narrator"],
        )


def _listing(document: tantivy.Document) -> dict[str, Any] | None:
    stored: bytes | None = document.get_first("listing")
    if stored is None:
        return None
    listing: dict[str, Any] = msgspec.json.decode(stored)
    return listing


class _Highlighter:
    """Marks the words a query matched, in the fields a hit shows, with tantivy's snippet generator.

    The snippet generator only knows exact terms, so the typo'd and prefix matches found in the hits
    are turned into exact terms first.
    """

    def __init__(self, searcher: tantivy.Searcher, tokens: list[str], documents: list[tantivy.Document]) -> None:
        self._analyzer = catalog_analyzer()
        self._generators: dict[str, tantivy.SnippetGenerator] = {}
        if not tokens:
            return
        for field in HIGHLIGHTED_FIELDS:
            words = {
                word for document in documents for text in document[field] for word in self._analyzer.analyze(text)
            }
            matched = words_matching(tokens, words)
            if matched:
                terms = [(Occur.Should, Query.term_query(AUDIOBOOK_SCHEMA, field, word)) for word in sorted(matched)]
                generator = tantivy.SnippetGenerator.create(
                    searcher, Query.boolean_query(terms), AUDIOBOOK_SCHEMA, field
                )
                generator.set_max_num_chars(DESCRIPTION_SNIPPET_CHARS if field == "description" else WHOLE_FIELD_CHARS)
                self._generators[field] = generator

    def highlights(self, document: tantivy.Document) -> Highlights:
        title = document.get_first("title") or ""
        description = document.get_first("description") or ""
        return Highlights(
            title=self._marked("title", title) or html.escape(title),
            authors=[self._marked("authors", name) or html.escape(name) for name in document["authors"]],
            narrators=[self._marked("narrators", name) or html.escape(name) for name in document["narrators"]],
            description=self._marked("description", description) or self._opening(description),
        )

    def _marked(self, field: str, text: str) -> str:
        """``text`` (or its best passage) with matches in ``<mark>``; empty when nothing matched."""
        generator = self._generators.get(field)
        if generator is None or not text:
            return ""
        snippet = generator.snippet_from_doc(tantivy.Document(**{field: [text]}))
        if not snippet.highlighted():
            return ""
        # to_html escapes the text, so the only <b> tags are tantivy's own match markers.
        marked = snippet.to_html().replace("<b>", "<mark>").replace("</b>", "</mark>")
        passage = snippet.fragment_range()
        prefix = CROP_MARKER if passage.start > 0 else ""
        suffix = CROP_MARKER if passage.end < len(text.encode()) else ""
        return f"{prefix}{marked}{suffix}"

    @staticmethod
    def _opening(description: str) -> str:
        words = description.split()
        cropped = " ".join(words[:DESCRIPTION_CROP_WORDS])
        return html.escape(cropped) + (CROP_MARKER if len(words) > DESCRIPTION_CROP_WORDS else "")

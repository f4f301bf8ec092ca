"""The search contract, run against Meilisearch and the embedded engine alike."""

from __future__ import annotations

from datetime import date
from typing import get_args

import anyio
import anyio.lowlevel
import msgspec
import pytest

from search import (
    AudiobookDocument,
    PersonDocument,
    SearchEngine,
    SearchEngineError,
    SearchFilters,
    SearchQuery,
)
from search.query import FacetName, FieldOrder, SortOption, parse_sort
from tests.search.catalog import (
    BY_ID,
    BY_TITLE,
    CATALOG,
    PEOPLE,
    facet_counts,
    matches,
    people_of,
    sort_value,
    sorted_values,
)

EVERYTHING = 100
ALL_FACETS: frozenset[FacetName] = frozenset({"genres", "languages", "authors", "narrators", "duration"})


async def titles(engine: SearchEngine, text: str, **options: object) -> list[str]:
    result = await engine.search(SearchQuery(text=text, **options))  # type: ignore[arg-type]
    return [BY_ID[hit.id].title for hit in result.hits]


# Typos: five letters allow one, nine letters two; the last word is also matched as a prefix.
@pytest.mark.parametrize(
    ("text", "intended"),
    [
        ("frankenstien", "Frankenstein"),  # one typo (a swap) in a title word
        ("frankinstien", "Frankenstein"),  # two typos in a title word
        ("persuasoin", "Persuasion"),
        ("expectatoins great", "Great Expectations"),  # typo in a word that is not the last
        ("baskervile", "The Hound of the Baskervilles"),
        ("shelly", "The Last Man"),  # one typo in an author's surname
        ("stivensen", "Treasure Island"),  # two typos in an author's surname
        ("melvile", "Moby Dick"),
    ],
)
async def test_a_typo_still_finds_the_intended_book_on_the_first_page(
    catalog_engine: SearchEngine, text: str, intended: str
) -> None:
    assert intended in await titles(catalog_engine, text, limit=10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("harr", {"The Adventures of Harry Richmond", "Harrington"}),
        ("sherl", {"The Adventures of Sherlock Holmes"}),
        ("pride and prej", {"Pride and Prejudice"}),
        ("drac", {"Dracula"}),
    ],
)
async def test_the_last_word_matches_as_a_prefix_while_typing(
    catalog_engine: SearchEngine, text: str, expected: set[str]
) -> None:
    assert expected <= set(await titles(catalog_engine, text, limit=10))


async def test_an_exact_title_ranks_first(catalog_engine: SearchEngine) -> None:
    assert (await titles(catalog_engine, "moby dick"))[0] == "Moby Dick"
    assert (await titles(catalog_engine, "dracula"))[0] == "Dracula"


async def test_books_matching_more_of_the_words_rank_first(catalog_engine: SearchEngine) -> None:
    assert (await titles(catalog_engine, "adventures sherlock"))[0] == "The Adventures of Sherlock Holmes"
    assert await titles(catalog_engine, "qwertyuiop") == []


@pytest.mark.parametrize(
    ("text", "intended"),
    [
        ("moby dik", "Moby Dick"),  # a misspelt short word, which may carry no typo
        ("dracula unabridged audiobook", "Dracula"),  # words no book has
        ("frankenstein full cast audiobook", "Frankenstein"),
        ("the hound of the baskervilles full cast", "The Hound of the Baskervilles"),
    ],
)
async def test_a_word_that_matches_nothing_does_not_empty_the_result(
    catalog_engine: SearchEngine, text: str, intended: str
) -> None:
    assert (await titles(catalog_engine, text))[0] == intended


@pytest.mark.parametrize(
    ("text", "intended"),
    [("benhur", "Ben-Hur"), ("ben hur", "Ben-Hur"), ("middle march", "Middlemarch"), ("middlemarch", "Middlemarch")],
)
async def test_joined_split_and_hyphenated_words_meet(engine: SearchEngine, text: str, intended: str) -> None:
    template = BY_TITLE["Dracula"]
    books = {
        title: msgspec.structs.replace(template, id=9100 + number, title=title, description="", series=None)
        for number, title in enumerate(["Ben-Hur", "Middlemarch", "The Middle Ages", "March of the Hours"])
    }
    await engine.upsert(list(books.values()))
    result = await engine.search(SearchQuery(text=text))
    assert result.hits[0].id == books[intended].id


async def test_of_equal_matches_the_shortest_title_ranks_first(engine: SearchEngine) -> None:
    original = BY_TITLE["Dracula"]
    copies = [
        msgspec.structs.replace(original, id=9000 + volume, title=f"Dracula, Volume {volume}", play_count=10**6)
        for volume in (2, 3)
    ]
    await engine.upsert([*copies, original])
    result = await engine.search(SearchQuery(text="dracula"))
    assert result.hits[0].id == original.id


@pytest.mark.parametrize(("text", "found"), [("a" * 499, 0), ("!!!", len(CATALOG)), ("", len(CATALOG))])
async def test_a_word_too_long_to_index_finds_nothing_and_punctuation_alone_browses(
    catalog_engine: SearchEngine, text: str, found: int
) -> None:
    assert (await catalog_engine.search(SearchQuery(text=text))).total == found


def titled(*titles: str) -> dict[str, AudiobookDocument]:
    """Books with only these titles (no description, series or people to match), ids from 9200."""
    template = msgspec.structs.replace(BY_TITLE["Dracula"], description="", series=None, authors=[], narrators=[])
    return {title: msgspec.structs.replace(template, id=9200 + n, title=title) for n, title in enumerate(titles)}


@pytest.mark.parametrize(
    ("text", "intended"),
    [
        ("80 days", "Around the World in Eighty Days"),  # a digit for a word
        ("twenty one", "The 21 Balloons"),  # words for digits, a term of two words
        ("dr thorne", "Doctor Thorne"),  # an abbreviation
        ("doctor faustus", "Dr Faustus"),  # and back: a set's terms stand for one another
    ],
)
async def test_synonyms_make_a_term_find_what_its_synonym_names(engine: SearchEngine, text: str, intended: str) -> None:
    # Without synonyms the one-word titles rank first (shortest of equal matches) or nothing matches.
    books = titled(
        "Around the World in Eighty Days", "The 21 Balloons", "Doctor Thorne", "Dr Faustus", "Days", "Thorne", "Faustus"
    )
    await engine.upsert(list(books.values()))
    await engine.set_synonyms([["80", "eighty"], ["21", "twenty-one"], ["dr", "doctor"]])
    assert (await engine.search(SearchQuery(text=text))).hits[0].id == books[intended].id
    # Replacing the sets takes effect from the next search.
    await engine.set_synonyms([])
    assert books[intended].id not in [hit.id for hit in (await engine.search(SearchQuery(text=text))).hits][:1]


async def test_synonyms_outlive_a_reindex(engine: SearchEngine) -> None:
    books = titled("Around the World in Eighty Days")
    await engine.set_synonyms([["80", "eighty"]])
    await engine.create_staging_index()
    await engine.load_staging(list(books.values()))
    await engine.swap_in_staging()
    assert [hit.id for hit in (await engine.search(SearchQuery(text="80"))).hits] == [9200]


FILTERS = [
    SearchFilters(genre="mystery"),
    SearchFilters(genre="children"),
    SearchFilters(author_id=5),
    SearchFilters(author_id=1),  # also a co-author of Harrington
    SearchFilters(narrator_id=104),
    SearchFilters(language="fr"),
    SearchFilters(language="de"),
    SearchFilters(duration_min=10800.0),
    SearchFilters(duration_max=3600.0),
    SearchFilters(duration_min=3600.0, duration_max=25200.0),
    SearchFilters(released_after=date(1900, 1, 1)),
    SearchFilters(released_before=date(1850, 6, 1)),
    SearchFilters(released_after=date(1850, 1, 1), released_before=date(1900, 1, 1)),
    SearchFilters(min_rating=4.0),
    SearchFilters(genre="classic", language="en", min_rating=3.0),
    SearchFilters(genre="no-such-genre"),
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda filters: msgspec.json.encode(filters).decode())
async def test_each_filter_keeps_exactly_the_matching_books(
    catalog_engine: SearchEngine, filters: SearchFilters
) -> None:
    result = await catalog_engine.search(SearchQuery(filters=filters, limit=EVERYTHING))

    expected = {book.id for book in CATALOG if matches(book, filters)}
    assert {hit.id for hit in result.hits} == expected
    assert result.total == len(expected)


async def test_filters_narrow_a_text_search(catalog_engine: SearchEngine) -> None:
    children = SearchFilters(genre="children")
    unfiltered = await titles(catalog_engine, "adventures", limit=EVERYTHING)
    filtered = await titles(catalog_engine, "adventures", filters=children, limit=EVERYTHING)

    assert {"The Adventures of Tom Sawyer", "Alice's Adventures in Wonderland"} <= set(filtered)
    assert set(filtered) == {title for title in unfiltered if matches(BY_TITLE[title], children)}


SORTS: tuple[SortOption, ...] = get_args(FieldOrder)
"""Every field order a client may ask for; adding one to the contract tests it here."""


@pytest.mark.parametrize("sort", SORTS)
async def test_each_sort_orders_the_whole_catalog(catalog_engine: SearchEngine, sort: SortOption) -> None:
    field, descending = parse_sort(sort) or ("title", False)
    result = await catalog_engine.search(SearchQuery(sort=sort, limit=EVERYTHING))

    found = [sort_value(BY_ID[hit.id], field) for hit in result.hits]
    assert found == sorted_values(CATALOG, field, descending=descending)


async def test_sorting_applies_to_text_matches(catalog_engine: SearchEngine) -> None:
    found = await titles(catalog_engine, "sherlock", sort="-release_date", limit=EVERYTHING)
    holmes = [book for book in CATALOG if book.series == "Sherlock Holmes"]
    assert [BY_TITLE[title].release_date for title in found] == sorted_values(holmes, "release_date", descending=True)


async def test_browsing_by_relevance_puts_the_most_played_first(catalog_engine: SearchEngine) -> None:
    result = await catalog_engine.search(SearchQuery(limit=EVERYTHING))
    assert [BY_ID[hit.id].play_count for hit in result.hits] == sorted_values(CATALOG, "play_count", descending=True)


@pytest.mark.parametrize(
    "filters",
    [SearchFilters(), SearchFilters(language="en"), SearchFilters(genre="classic", min_rating=3.0)],
    ids=["everything", "english", "good-classics"],
)
async def test_facet_counts_equal_a_count_over_the_matching_books(
    catalog_engine: SearchEngine, filters: SearchFilters
) -> None:
    result = await catalog_engine.search(SearchQuery(filters=filters, facets=ALL_FACETS, limit=1))

    assert result.facets == facet_counts([book for book in CATALOG if matches(book, filters)])


async def test_facets_count_text_matches_too(catalog_engine: SearchEngine) -> None:
    result = await catalog_engine.search(
        SearchQuery(text="adventures", facets=frozenset({"genres", "authors"}), limit=EVERYTHING)
    )

    found = facet_counts([BY_ID[hit.id] for hit in result.hits])
    assert result.total == len(result.hits) > 0
    assert result.facets == {"genres": found["genres"], "authors": found["authors"]}


async def test_only_requested_facets_are_counted(catalog_engine: SearchEngine) -> None:
    assert (await catalog_engine.search(SearchQuery(facets=frozenset({"duration"})))).facets.keys() == {"duration"}
    assert (await catalog_engine.search(SearchQuery())).facets == {}


async def test_highlights_mark_the_matched_words(catalog_engine: SearchEngine) -> None:
    result = await catalog_engine.search(SearchQuery(text="frankenstein"))

    highlights = result.hits[0].highlights
    assert highlights.title == "<mark>Frankenstein</mark>"
    assert "<mark>Frankenstein</mark>" in highlights.description
    assert highlights.authors == ["Mary Shelley"]


async def test_highlights_mark_typos_prefixes_and_people(catalog_engine: SearchEngine) -> None:
    typo = (await catalog_engine.search(SearchQuery(text="frankenstien"))).hits[0].highlights
    prefix = (await catalog_engine.search(SearchQuery(text="baskerv"))).hits[0].highlights
    author = (await catalog_engine.search(SearchQuery(text="dickens", sort="title"))).hits[0].highlights
    narrator = (await catalog_engine.search(SearchQuery(text="savage", sort="title"))).hits[0].highlights

    assert "<mark>Frankenstein</mark>" in typo.title
    assert "<mark>Baskerv" in prefix.title
    assert author.authors == ["Charles <mark>Dickens</mark>"]
    assert "Karen <mark>Savage</mark>" in narrator.narrators


async def test_highlights_are_html_escaped_and_the_description_is_cropped(catalog_engine: SearchEngine) -> None:
    result = await catalog_engine.search(SearchQuery(text="voice", filters=SearchFilters(author_id=3)))

    description = result.hits[0].highlights.description
    assert "<mark>voice</mark>" in description
    assert len(description.split()) < len(BY_ID[result.hits[0].id].description.split())
    escaped = (await catalog_engine.search(SearchQuery(text="frankenstein"))).hits[0].highlights.description
    assert "horror &amp; science-fiction" in escaped


async def test_pages_cover_the_results_once_and_report_the_exact_total(catalog_engine: SearchEngine) -> None:
    everything = [hit.id for hit in (await catalog_engine.search(SearchQuery(sort="title", limit=EVERYTHING))).hits]

    pages: list[int] = []
    for offset in range(0, len(CATALOG) + 7, 7):
        page = await catalog_engine.search(SearchQuery(sort="title", limit=7, offset=offset))
        assert page.total == len(CATALOG)
        pages.extend(hit.id for hit in page.hits)
    unaligned = await catalog_engine.search(SearchQuery(sort="title", limit=7, offset=5))

    assert pages == everything
    assert [hit.id for hit in unaligned.hits] == everything[5:12]
    assert unaligned.total == len(CATALOG)


async def test_count_and_processing_time(catalog_engine: SearchEngine) -> None:
    assert await catalog_engine.count() == len(CATALOG)
    assert (await catalog_engine.search(SearchQuery(text="island"))).processing_time_ms >= 0


@pytest.mark.parametrize(
    "filters",
    [
        SearchFilters(language='en" OR language = "fr'),
        SearchFilters(language='en\\" OR language = \\"fr'),
        SearchFilters(genre='mystery" OR genre.slug EXISTS OR language = "x'),
        SearchFilters(genre="mystery OR 1 = 1"),
    ],
    ids=["quote", "backslash-quote", "exists", "bare-or"],
)
async def test_filter_values_cannot_widen_the_search(catalog_engine: SearchEngine, filters: SearchFilters) -> None:
    result = await catalog_engine.search(SearchQuery(filters=filters, limit=EVERYTHING))

    assert result.total == 0
    assert result.hits == []


async def test_filter_values_with_quotes_match_literally(engine: SearchEngine) -> None:
    strange = 'en" OR language = "fr \\ end'
    await engine.upsert([BY_TITLE["Emma"], msgspec.structs.replace(BY_TITLE["Dracula"], language=strange)])

    result = await engine.search(SearchQuery(filters=SearchFilters(language=strange)))

    assert [hit.id for hit in result.hits] == [BY_TITLE["Dracula"].id]


async def test_suggest_completes_books_authors_and_narrators(catalog_engine: SearchEngine) -> None:
    books = await catalog_engine.suggest("drac")
    people = await catalog_engine.suggest("mar")
    narrators = await catalog_engine.suggest("karen sav")

    assert [book.title for book in books.audiobooks][:1] == ["Dracula"]
    assert {author.name for author in people.authors} >= {"Mary Shelley", "Mark Twain", "Maria Edgeworth"}
    assert "Mark Nelson" in {narrator.name for narrator in people.narrators}
    assert [narrator.name for narrator in narrators.narrators] == ["Karen Savage"]
    assert narrators.authors == []


async def test_suggest_tolerates_typos_and_honours_the_limit(catalog_engine: SearchEngine) -> None:
    typo = await catalog_engine.suggest("dikens")
    limited = await catalog_engine.suggest("the", limit=2)
    nothing = await catalog_engine.suggest("   ")

    assert [author.name for author in typo.authors] == ["Charles Dickens"]
    assert len(limited.audiobooks) == 2
    assert (nothing.audiobooks, nothing.authors, nothing.narrators) == ([], [], [])


async def test_a_more_prolific_person_is_suggested_first(catalog_engine: SearchEngine) -> None:
    suggestions = await catalog_engine.suggest("ma", limit=10)
    counts = {person.id: person.audiobooks_count for person in PEOPLE if person.kind == "author"}

    found = [counts[author.id] for author in suggestions.authors]
    assert found == sorted(found, reverse=True)


async def test_upsert_replaces_the_whole_document(engine: SearchEngine) -> None:
    await engine.upsert(CATALOG[:5])
    renamed = msgspec.structs.replace(BY_TITLE["Emma"], title="Northanger Abbey", description="", genres=[])

    await engine.upsert([renamed])

    assert await titles(engine, "emma") == []
    assert [hit.id for hit in (await engine.search(SearchQuery(text="northanger"))).hits] == [renamed.id]
    assert (await engine.search(SearchQuery(filters=SearchFilters(genre="romance")))).total == 3
    assert await engine.count() == 5


async def test_deleted_books_and_people_are_no_longer_found(engine: SearchEngine) -> None:
    await engine.upsert(CATALOG)
    await engine.upsert_people(PEOPLE)

    await engine.delete([BY_TITLE["Dracula"].id, BY_TITLE["Frankenstein"].id, 9999])
    await engine.delete_people("author", [10])

    assert await titles(engine, "dracula") == []
    assert await titles(engine, "frankenstein") == []
    assert await engine.count() == len(CATALOG) - 2
    assert (await engine.search(SearchQuery(filters=SearchFilters(genre="horror")))).total == 3
    assert (await engine.suggest("stoker")).authors == []


async def test_an_author_and_a_narrator_may_share_an_id(engine: SearchEngine) -> None:
    await engine.upsert_people(
        [
            PersonDocument(id=7, name="Ada Lovelace", kind="author", audiobooks_count=1),
            PersonDocument(id=7, name="Ada Narrator", kind="narrator", audiobooks_count=1),
        ]
    )
    await engine.delete_people("narrator", [7])

    suggestions = await engine.suggest("ada")
    assert [author.name for author in suggestions.authors] == ["Ada Lovelace"]
    assert suggestions.narrators == []


async def test_empty_writes_are_no_ops(engine: SearchEngine) -> None:
    await engine.upsert([])
    await engine.delete([])
    await engine.upsert_people([])
    await engine.delete_people("author", [])
    assert await engine.count() == 0


async def test_configure_is_idempotent(engine: SearchEngine) -> None:
    await engine.upsert(CATALOG[:3])
    await engine.configure()
    assert await engine.count() == 3


async def test_reindex_swaps_in_the_new_index_while_searches_keep_answering(engine: SearchEngine) -> None:
    old, new = CATALOG[:30], CATALOG[20:]
    await engine.upsert(old)
    await engine.upsert_people(people_of(old))
    totals_seen: set[int] = set()
    swapped = anyio.Event()

    async def keep_searching() -> None:
        while not swapped.is_set():
            totals_seen.add((await engine.search(SearchQuery())).total)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as searching:
        searching.start_soon(keep_searching)
        await engine.create_staging_index()
        for start in range(0, len(new), 5):
            await engine.load_staging(new[start : start + 5], people_of(new[start : start + 5]))
        assert await engine.count() == len(old)
        await engine.swap_in_staging()
        swapped.set()

    assert totals_seen <= {len(old), len(new)}
    assert len(old) in totals_seen
    assert await engine.count() == len(new)
    everything = await engine.search(SearchQuery(limit=EVERYTHING))
    assert {hit.id for hit in everything.hits} == {book.id for book in new}
    assert (await engine.suggest("dickens")).authors == []
    assert [author.name for author in (await engine.suggest("meredith")).authors] == ["George Meredith"]


async def test_changes_during_a_rebuild_survive_the_swap(engine: SearchEngine) -> None:
    await engine.upsert(CATALOG[:10])
    await engine.create_staging_index()
    await engine.load_staging(CATALOG[:10])

    added = CATALOG[10]
    await engine.upsert([added])
    await engine.delete([CATALOG[0].id])
    await engine.swap_in_staging()

    ids = {hit.id for hit in (await engine.search(SearchQuery(limit=EVERYTHING))).hits}
    assert ids == {book.id for book in CATALOG[1:11]}


async def test_a_dropped_rebuild_leaves_the_live_index_alone(engine: SearchEngine) -> None:
    await engine.upsert(CATALOG[:4])
    await engine.create_staging_index()
    await engine.load_staging(CATALOG[4:6])
    await engine.create_staging_index()  # starting over replaces the unfinished rebuild

    await engine.drop_staging()
    await engine.drop_staging()

    assert await engine.count() == 4
    with pytest.raises(SearchEngineError, match="staging"):
        await engine.swap_in_staging()
    with pytest.raises(SearchEngineError, match="staging"):
        await engine.load_staging(CATALOG[4:6])


async def test_health_answers_when_the_engine_does(engine: SearchEngine) -> None:
    await engine.health()


def test_documents_round_trip_as_json() -> None:
    book = CATALOG[0]
    assert msgspec.json.decode(msgspec.json.encode(book), type=AudiobookDocument) == book

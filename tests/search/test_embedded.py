"""What only the embedded engine does: its index lives in a directory and survives restarts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tantivy

from search import SearchEngineError, SearchEngineUnavailable, SearchQuery
from search.embedded import CURRENT_POINTER, EmbeddedSearchEngine, words_matching
from search.query import MAX_RESULT_WINDOW
from tests.search.catalog import CATALOG, PEOPLE


@pytest.mark.parametrize(
    ("typed", "word", "matched"),
    [
        ("holmes", "holmes", True),
        ("homles", "holmes", True),  # neighbours swapped: one typo, within a 6-letter word's budget
        ("hlomse", "holmes", False),  # two typos
        ("holme", "holmes", True),  # one letter dropped
        ("stivensen", "stevenson", True),  # two typos in a 9-letter word
        ("stivansen", "stevenson", False),  # three
        ("emma", "anna", False),  # no typo in a 4-letter word
    ],
)
def test_the_highlighter_matches_words_as_the_typo_query_does(typed: str, word: str, matched: bool) -> None:
    # Not the last word, so no prefix matching: "zzzz" stands last and matches nothing.
    assert (word in words_matching([typed, "zzzz"], [word, "other"])) is matched


@pytest.mark.parametrize(
    ("typed", "matched"),
    [("sher", {"sherlock"}), ("holm", {"holmes"}), ("sherlcok", {"sherlock"}), ("shre", set()), ("xyz", set())],
)
def test_the_last_word_also_matches_the_beginning_of_a_word(typed: str, matched: set[str]) -> None:
    assert words_matching([typed], ["sherlock", "holmes"]) == matched


def generations_on_disk(directory: Path) -> tuple[list[str], str]:
    """The generation directories present, and the one ``CURRENT`` names."""
    generations = sorted(path.name for path in directory.iterdir() if path.is_dir())
    return generations, (directory / CURRENT_POINTER).read_text()


async def test_the_index_survives_a_restart(tmp_path: Path) -> None:
    first = EmbeddedSearchEngine(tmp_path)
    await first.upsert(CATALOG)
    await first.upsert_people(PEOPLE)
    await first.close()

    reopened = EmbeddedSearchEngine(tmp_path)
    try:
        assert await reopened.count() == len(CATALOG)
        assert [author.name for author in (await reopened.suggest("doyle")).authors] == ["Arthur Conan Doyle"]
    finally:
        await reopened.close()


async def test_a_restart_after_a_swap_opens_the_new_index_and_forgets_abandoned_rebuilds(tmp_path: Path) -> None:
    engine = EmbeddedSearchEngine(tmp_path)
    await engine.upsert(CATALOG[:5])
    await engine.create_staging_index()
    await engine.load_staging(CATALOG[5:8])
    await engine.swap_in_staging()
    await engine.create_staging_index()  # a rebuild the process never finishes
    await engine.close()

    reopened = EmbeddedSearchEngine(tmp_path)
    try:
        assert {hit.id for hit in (await reopened.search(SearchQuery())).hits} == {book.id for book in CATALOG[5:8]}
        generations, current = generations_on_disk(tmp_path)
        assert generations == [current]
    finally:
        await reopened.close()


async def test_health_fails_once_the_index_directory_is_gone(tmp_path: Path) -> None:
    engine = EmbeddedSearchEngine(tmp_path / "index")
    await engine.health()
    shutil.rmtree(tmp_path / "index")
    try:
        with pytest.raises(SearchEngineUnavailable):
            await engine.health()
    finally:
        await engine.close()


async def test_a_second_engine_on_the_same_directory_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    first = EmbeddedSearchEngine(tmp_path)
    await first.upsert(CATALOG[:3])
    second = EmbeddedSearchEngine(tmp_path)
    with pytest.raises(SearchEngineError, match="in use by another engine"):
        await second.count()
    assert await first.count() == 3  # the refused engine cleaned nothing up
    await first.close()
    try:
        assert await second.count() == 3
    finally:
        await second.close()


@pytest.mark.parametrize("sort", ["relevance", "-title"])
async def test_an_offset_far_past_the_end_reads_an_empty_page(tmp_path: Path, sort: str) -> None:
    # tantivy reserves room for offset + limit hits: the deepest page of the window, far past the end,
    # collects no more than there are documents.
    engine = EmbeddedSearchEngine(tmp_path)
    try:
        await engine.upsert(CATALOG)
        result = await engine.search(SearchQuery(sort=sort, offset=MAX_RESULT_WINDOW - 20, limit=20))
        assert result.hits == []
        assert result.total == len(CATALOG)
    finally:
        await engine.close()


async def test_an_index_written_with_other_fields_opens_empty_and_takes_writes(tmp_path: Path) -> None:
    engine = EmbeddedSearchEngine(tmp_path)
    await engine.upsert(CATALOG)
    await engine.close()
    # As a version whose documents had other fields left it: tantivy refuses to open it with today's schema.
    live = tmp_path / (tmp_path / CURRENT_POINTER).read_text().strip() / "audiobooks"
    shutil.rmtree(live)
    live.mkdir()
    older = tantivy.SchemaBuilder()
    older.add_integer_field("id", stored=True, indexed=True)
    tantivy.Index(older.build(), str(live))

    reopened = EmbeddedSearchEngine(tmp_path)
    try:
        assert await reopened.count() == 0  # empty, for the app to rebuild, rather than every search failing
        await reopened.upsert(CATALOG)
        assert await reopened.count() == len(CATALOG)
        assert (await reopened.search(SearchQuery(text="dracula"))).hits
    finally:
        await reopened.close()

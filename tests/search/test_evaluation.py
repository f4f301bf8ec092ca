"""The evaluation set as a regression floor: real typo'd and loose queries find the intended book on both engines.

The demo catalog's 360 real titles and a "Volume 2" copy of each (the copies the demo seed adds for
large catalogs, which must not crowd the originals out) are indexed as documents; every query of
``eval_queries.json`` must put its book in the first three hits often enough. ``bench.search_eval``
measures the same set through the API and records the rates.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from audioverse.catalog.seed import demo_entries
from search import AudiobookDocument, GenreRef, PersonRef, SearchEngine, SearchQuery
from tests.search.conftest import ENGINES, dispose, open_engine

QUERIES: list[dict[str, str]] = json.loads((Path(__file__).with_name("eval_queries.json")).read_text())
TOP = 3
# The rates measured when the set was written (bench/results/search_eval.json), less a margin.
TOP_3_FLOOR = 0.95
TOP_1_FLOOR = 0.88


def demo_documents() -> list[AudiobookDocument]:
    """Each demo title as the catalog indexes it, then its "Volume 2" copy, more played than it."""
    people: dict[str, int] = {}
    genres: dict[str, GenreRef] = {}
    documents = []
    entries = demo_entries()
    for copy in (0, 1):
        for index, entry in enumerate(entries):
            title = entry["title"] if copy == 0 else f"{entry['title']}, Volume 2"
            documents.append(
                AudiobookDocument(
                    id=copy * len(entries) + index + 1,
                    title=title,
                    subtitle=entry["subtitle"] or "",
                    description=entry["description"],
                    series=entry["series"] or (entry["title"] if copy else None),
                    authors=[PersonRef(people.setdefault(name, len(people) + 1), name) for name in entry["authors"]],
                    narrators=[
                        PersonRef(people.setdefault(name, len(people) + 1), name) for name in entry["narrators"]
                    ],
                    genres=[
                        genres.setdefault(name, GenreRef(len(genres) + 1, name, name.lower().replace(" ", "-")))
                        for name in entry["genres"]
                    ],
                    language=entry["language"],
                    duration_seconds=3600.0,
                    release_date=date(entry["year"], 1, 1),
                    play_count=100 + copy,
                    created_at=datetime(2026, 1, 1, tzinfo=UTC),
                )
            )
    return documents


@pytest.fixture(scope="module", params=ENGINES)
async def demo_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SearchEngine]:
    engine = await open_engine(request.param, request, tmp_path_factory.mktemp("demo-index"))
    await engine.upsert(demo_documents())
    yield engine
    await dispose(engine, request)


async def test_the_evaluation_set_finds_the_intended_books(demo_engine: SearchEngine) -> None:
    titles = {document.id: document.title for document in demo_documents()}
    first = among_top = 0
    misses = []
    for query in QUERIES:
        result = await demo_engine.search(SearchQuery(text=query["query"], limit=TOP))
        found = [titles[hit.id] for hit in result.hits]
        first += bool(found) and found[0] == query["expect"]
        among_top += query["expect"] in found
        if query["expect"] not in found:
            misses.append((query["query"], query["expect"], found))
    assert among_top / len(QUERIES) >= TOP_3_FLOOR, misses
    assert first / len(QUERIES) >= TOP_1_FLOOR, misses


async def test_words_a_listener_adds_never_empty_the_result(demo_engine: SearchEngine) -> None:
    added = [query["query"] for query in QUERIES if query["kind"] == "extra_words"]
    empty = [text for text in added if not (await demo_engine.search(SearchQuery(text=text, limit=TOP))).hits]
    assert added
    assert not empty

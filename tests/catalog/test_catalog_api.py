"""The catalog API: every list filter and sort, pagination, detail, edits and their permissions."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import event, func, select

from audioverse.catalog.models import CatalogOutbox, OutboxEntity, OutboxOperation
from audioverse.catalog.outbox import install_catalog_outbox
from audioverse.config import Settings
from audioverse.db import sqlalchemy_config
from tests.accounts.test_auth_flow import bearer
from tests.catalog.fixtures import MakeBook, Tokens
from tests.factories import AudiobookFactory

Client = AsyncTestClient[Litestar]


@contextmanager
def counted_statements(app: Litestar) -> Iterator[list[str]]:
    engine = app.state.database.get_engine().sync_engine
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
async def shelf(make_book: MakeBook, tag: str) -> dict[str, int]:
    """Five books sharing the genre ``tag``, each differing in every filterable and sortable field."""
    specs = {
        "alpha": dict(duration=600, release=date(1851, 10, 18), language="en", rating=4.5, plays=10),
        "bravo": dict(duration=7200, release=date(1813, 1, 28), language="fr", rating=3.0, plays=500),
        "charlie": dict(duration=36000, release=None, language="en", rating=0.0, plays=0),
        "delta": dict(duration=1800, release=date(1920, 6, 1), language="de", rating=5.0, plays=42),
        "echo": dict(duration=90000, release=date(1899, 3, 3), language="en", rating=2.25, plays=9999),
    }
    ids = {}
    for name, spec in specs.items():
        ids[name] = await make_book(
            title=f"{name.title()} {tag}",
            authors=(f"Author {name} {tag}", f"Shared Author {tag}")
            if name in {"alpha", "bravo"}
            else (f"Author {name} {tag}",),
            narrators=(f"Narrator {tag}",) if name != "echo" else (f"Other Narrator {tag}",),
            genres=(f"Genre {tag}",),
            **spec,
        )
    return ids


async def titles(client: Client, tag: str, **params: Any) -> list[str]:
    response = await client.get("/api/audiobooks/", params={"genre": f"genre-{tag}", **params})
    assert response.status_code == 200, response.text
    return [item["title"].split()[0].lower() for item in response.json()["items"]]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("title", ["alpha", "bravo", "charlie", "delta", "echo"]),
        ("-title", ["echo", "delta", "charlie", "bravo", "alpha"]),
        ("duration_seconds", ["alpha", "delta", "bravo", "charlie", "echo"]),
        ("-duration_seconds", ["echo", "charlie", "bravo", "delta", "alpha"]),
        ("release_date", ["bravo", "alpha", "echo", "delta", "charlie"]),  # no date: last
        ("-release_date", ["delta", "echo", "alpha", "bravo", "charlie"]),
        ("average_rating", ["charlie", "echo", "bravo", "alpha", "delta"]),
        ("-average_rating", ["delta", "alpha", "bravo", "echo", "charlie"]),
        ("play_count", ["charlie", "alpha", "delta", "bravo", "echo"]),
        ("-play_count", ["echo", "bravo", "delta", "alpha", "charlie"]),
        ("created_at", ["alpha", "bravo", "charlie", "delta", "echo"]),
        ("-created_at", ["echo", "delta", "charlie", "bravo", "alpha"]),
    ],
)
async def test_every_sort(client: Client, shelf: dict[str, int], tag: str, sort: str, expected: list[str]) -> None:
    assert await titles(client, tag, sort=sort) == expected


async def test_every_filter(client: Client, shelf: dict[str, int], tag: str) -> None:
    authors = (await client.get("/api/authors/", params={"q": f"Shared Author {tag}"})).json()["items"]
    narrators = (await client.get("/api/narrators/", params={"q": f"Other Narrator {tag}"})).json()["items"]
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({}, ["alpha", "bravo", "charlie", "delta", "echo"]),
        ({"author": authors[0]["id"]}, ["alpha", "bravo"]),
        ({"narrator": narrators[0]["id"]}, ["echo"]),
        ({"language": "en"}, ["alpha", "charlie", "echo"]),
        ({"duration_min": 1800}, ["bravo", "charlie", "delta", "echo"]),
        ({"duration_max": 7200}, ["alpha", "bravo", "delta"]),
        ({"duration_min": 1000, "duration_max": 40000}, ["bravo", "charlie", "delta"]),
        ({"released_after": "1851-10-18"}, ["alpha", "delta", "echo"]),
        ({"released_before": "1851-10-18"}, ["alpha", "bravo"]),
        ({"min_rating": 3}, ["alpha", "bravo", "delta"]),
        ({"language": "en", "min_rating": 2}, ["alpha", "echo"]),
        ({"author": 987654321}, []),
    ]
    for params, expected in cases:
        assert await titles(client, tag, sort="title", **params) == expected, params
    assert (await client.get("/api/audiobooks/", params={"genre": "no-such-genre"})).json()["total"] == 0


async def test_pagination_totals(client: Client, shelf: dict[str, int], tag: str) -> None:
    pages = []
    for offset in (0, 2, 4, 6):
        response = await client.get(
            "/api/audiobooks/", params={"genre": f"genre-{tag}", "sort": "title", "limit": 2, "offset": offset}
        )
        body = response.json()
        assert body["total"] == 5
        assert (body["limit"], body["offset"]) == (2, offset)
        pages.append([item["id"] for item in body["items"]])
    assert [len(page) for page in pages] == [2, 2, 1, 0]
    assert len({book for page in pages for book in page}) == 5


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"sort": "price"},
        {"sort": "-"},
        {"min_rating": 6},
        {"author": "abc"},
        {"released_after": "yesterday"},
        {"duration_min": -5},
        {"duration_max": "inf"},
        {"min_rating": "nan"},
    ],
)
async def test_bad_list_parameters_are_4xx(client: Client, params: dict[str, Any]) -> None:
    response = await client.get("/api/audiobooks/", params=params)
    assert response.status_code in {400, 422}
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_list_page_costs_a_constant_number_of_statements(
    client: Client, app: Litestar, make_book: MakeBook, tag: str
) -> None:
    for index in range(3):
        await make_book(title=f"Few {index}", authors=(f"A{index} {tag}", f"B{index} {tag}"), genres=(f"Genre {tag}",))
    with counted_statements(app) as few:
        await client.get("/api/audiobooks/", params={"genre": f"genre-{tag}", "limit": 100})
    for index in range(12):
        await make_book(
            title=f"Many {index}",
            authors=(f"C{index} {tag}",),
            narrators=(f"N{index} {tag}",),
            genres=(f"Genre {tag}",),
        )
    with counted_statements(app) as many:
        response = await client.get("/api/audiobooks/", params={"genre": f"genre-{tag}", "limit": 100})
    assert response.json()["total"] == 15
    assert len(many) == len(few)
    assert len(many) <= 6, many


async def test_detail_has_contiguous_chapters(client: Client, make_book: MakeBook) -> None:
    book_id = await make_book(title="Chaptered", duration=100.5, chapters=3)
    detail = (await client.get(f"/api/audiobooks/{book_id}/")).json()
    assert [c["chapter_number"] for c in detail["chapters"]] == [1, 2, 3]
    assert detail["chapters"][0]["start_time_seconds"] == 0
    assert detail["chapters"][-1]["end_time_seconds"] == 100.5
    for before, after in zip(detail["chapters"], detail["chapters"][1:], strict=False):
        assert before["end_time_seconds"] == after["start_time_seconds"]
    assert (await client.get(f"/api/audiobooks/{book_id}/chapters/")).json() == detail["chapters"]
    assert (await client.get("/api/audiobooks/987654321/")).status_code == 404
    assert (await client.get("/api/audiobooks/987654321/chapters/")).status_code == 404


async def test_a_book_reads_the_same_in_the_list_the_detail_and_a_profile(
    client: Client, make_book: MakeBook, uploader: Tokens, tag: str
) -> None:
    book_id = await make_book(
        title=f"Wire {tag}",
        authors=(f"Wire Author {tag}",),
        narrators=(f"Wire Narrator {tag}",),
        genres=(f"Genre {tag}",),
        release=date(1900, 1, 2),
        rating=4.5,
        plays=7,
        uploader=uploader["user_id"],
    )
    detail = (await client.get(f"/api/audiobooks/{book_id}/")).json()
    assert set(detail) == {
        *("id", "title", "subtitle", "description", "cover_url", "duration_seconds", "release_date", "language"),
        *("publisher", "isbn", "series", "series_position", "authors", "narrators", "genres", "average_rating"),
        *("total_ratings", "total_reviews", "play_count", "format", "mime_type", "size_bytes", "bitrate"),
        *("uploaded_by", "created_at", "updated_at", "chapters"),
    }
    assert detail["uploaded_by"] == uploader["user_id"]
    assert detail["cover_url"] is None
    assert (detail["average_rating"], detail["play_count"], detail["release_date"]) == (4.5, 7, "1900-01-02")
    assert [author["name"] for author in detail["authors"]] == [f"Wire Author {tag}"]
    assert detail["genres"] == [{"id": detail["genres"][0]["id"], "name": f"Genre {tag}", "slug": f"genre-{tag}"}]
    listed = {key: value for key, value in detail.items() if key != "chapters"}
    assert (await client.get("/api/audiobooks/", params={"genre": f"genre-{tag}"})).json()["items"] == [listed]
    profile = (await client.get(f"/api/narrators/{detail['narrators'][0]['id']}/")).json()
    assert profile["audiobooks_count"] == 1
    assert profile["audiobooks"] == [listed]


async def test_edit_permissions(
    client: Client, make_book: MakeBook, uploader: Tokens, other_listener: Tokens, curator: Tokens
) -> None:
    book_id = await make_book(title="Owned", uploader=uploader["user_id"])
    anonymous = await client.patch(f"/api/audiobooks/{book_id}/", json={"title": "Anonymous edit"})
    assert anonymous.status_code == 401
    stranger = await client.patch(f"/api/audiobooks/{book_id}/", headers=bearer(other_listener), json={"title": "X"})
    assert stranger.status_code == 403
    owner = await client.patch(
        f"/api/audiobooks/{book_id}/",
        headers=bearer(uploader),
        json={"title": "Owned, Revised", "authors": ["Mary Shelley", "mary shelley"], "genres": ["Gothic Horror"]},
    )
    assert owner.status_code == 200, owner.text
    assert owner.json()["title"] == "Owned, Revised"
    assert [a["name"] for a in owner.json()["authors"]] == ["Mary Shelley"]
    assert owner.json()["genres"][0]["slug"] == "gothic-horror"
    by_curator = await client.put(f"/api/audiobooks/{book_id}/", headers=bearer(curator), json={"series": "Curated"})
    assert by_curator.status_code == 200
    assert by_curator.json()["series"] == "Curated"
    assert by_curator.json()["title"] == "Owned, Revised"


@pytest.mark.parametrize(
    "body",
    [
        {"title": ""},
        {"authors": []},
        {"isbn": "12"},
        {"language": "english please"},
        {"series_position": -1},
        {"owner": 1},
    ],
)
async def test_bad_edits_are_422_and_change_nothing(
    client: Client, make_book: MakeBook, curator: Tokens, body: dict[str, Any]
) -> None:
    book_id = await make_book(title="Stable")
    before = (await client.get(f"/api/audiobooks/{book_id}/")).json()
    response = await client.patch(f"/api/audiobooks/{book_id}/", headers=bearer(curator), json=body)
    assert response.status_code in {400, 422}
    assert (await client.get(f"/api/audiobooks/{book_id}/")).json() == before


async def test_replacing_chapters_validates_them(
    client: Client, make_book: MakeBook, uploader: Tokens, other_listener: Tokens
) -> None:
    book_id = await make_book(title="Rechaptered", duration=300, uploader=uploader["user_id"])
    url = f"/api/audiobooks/{book_id}/chapters/"
    good = [
        {"title": "One", "start_time_seconds": 0, "end_time_seconds": 100.25},
        {"title": "Two", "start_time_seconds": 100.25, "end_time_seconds": 300},
    ]
    assert (await client.put(url, headers=bearer(other_listener), json=good)).status_code == 403
    replaced = await client.put(url, headers=bearer(uploader), json=good)
    assert replaced.status_code == 200
    assert [c["title"] for c in replaced.json()] == ["One", "Two"]
    bad_lists = [
        [],
        [{"title": "Past the end", "start_time_seconds": 0, "end_time_seconds": 301}],
        [{"title": "Backwards", "start_time_seconds": 50, "end_time_seconds": 10}],
        [good[1], good[0]],
        [
            {"title": "A", "start_time_seconds": 0, "end_time_seconds": 200},
            {"title": "B", "start_time_seconds": 150, "end_time_seconds": 300},
        ],
        [{"title": "Negative", "start_time_seconds": -1, "end_time_seconds": 10}],
    ]
    for bad in bad_lists:
        response = await client.put(url, headers=bearer(uploader), json=bad)
        assert response.status_code == 422, bad
    assert [c["title"] for c in (await client.get(url)).json()] == ["One", "Two"]


async def test_delete_permissions_and_effect(
    client: Client, make_book: MakeBook, uploader: Tokens, other_listener: Tokens
) -> None:
    book_id = await make_book(title="Doomed", uploader=uploader["user_id"])
    assert (await client.delete(f"/api/audiobooks/{book_id}/", headers=bearer(other_listener))).status_code == 403
    assert (await client.delete(f"/api/audiobooks/{book_id}/", headers=bearer(uploader))).status_code == 204
    assert (await client.get(f"/api/audiobooks/{book_id}/")).status_code == 404
    assert (await client.delete(f"/api/audiobooks/{book_id}/", headers=bearer(uploader))).status_code == 404


async def test_people_and_genres(
    client: Client, shelf: dict[str, int], tag: str, curator: Tokens, uploader: Tokens
) -> None:
    page = (await client.get("/api/authors/", params={"q": f"shared author {tag}"})).json()
    assert page["total"] == 1
    shared = page["items"][0]
    assert shared["audiobooks_count"] == 2
    detail = (await client.get(f"/api/authors/{shared['id']}/")).json()
    assert sorted(b["title"].split()[0] for b in detail["audiobooks"]) == ["Alpha", "Bravo"]
    narrators = (await client.get("/api/narrators/", params={"q": f"Narrator {tag}"})).json()
    assert {n["audiobooks_count"] for n in narrators["items"]} == {4, 1}
    refused = await client.patch(f"/api/authors/{shared['id']}/", headers=bearer(uploader), json={"bio": "x"})
    assert refused.status_code == 403
    edited = await client.patch(
        f"/api/authors/{shared['id']}/",
        headers=bearer(curator),
        json={"name": f"Renamed Author {tag}", "website": "https://example.org/author"},
    )
    assert edited.status_code == 200
    assert edited.json()["audiobooks_count"] == 2
    book = (await client.get(f"/api/audiobooks/{shield(shelf)}/")).json()
    assert f"Renamed Author {tag}" in [a["name"] for a in book["authors"]]
    bad_site = await client.patch(
        f"/api/narrators/{narrators['items'][0]['id']}/",
        headers=bearer(curator),
        json={"website": "javascript:alert(1)"},
    )
    assert bad_site.status_code in {400, 422}
    assert (await client.get("/api/narrators/987654321/")).status_code == 404
    genres = {g["slug"]: g for g in (await client.get("/api/genres/")).json()}
    assert genres[f"genre-{tag}"]["audiobooks_count"] == 5


def shield(shelf: dict[str, int]) -> int:
    return shelf["alpha"]


async def test_catalog_writes_leave_outbox_rows(
    client: Client, make_book: MakeBook, settings: Settings, curator: Tokens
) -> None:
    book_id = await make_book(title="Outboxed")
    await client.patch(f"/api/audiobooks/{book_id}/", headers=bearer(curator), json={"subtitle": "Now indexed"})
    await client.delete(f"/api/audiobooks/{book_id}/", headers=bearer(curator))
    database = sqlalchemy_config(settings)
    async with database.get_session() as session:
        rows = (
            await session.execute(
                select(CatalogOutbox.operation, func.count())
                .where(CatalogOutbox.entity == OutboxEntity.AUDIOBOOK, CatalogOutbox.entity_id == book_id)
                .group_by(CatalogOutbox.operation)
            )
        ).all()
    await database.get_engine().dispose()
    counts = dict(rows)
    assert counts[OutboxOperation.UPSERT] >= 2  # created, then edited
    assert counts[OutboxOperation.DELETE] == 1


async def test_a_rolled_back_write_leaves_no_outbox_row(settings: Settings) -> None:
    database = sqlalchemy_config(settings)
    install_catalog_outbox(database)
    async with database.get_session() as session:
        before = await session.scalar(select(func.coalesce(func.max(CatalogOutbox.id), 0)))
        newer = select(func.count()).where(CatalogOutbox.id > before)
        session.add(AudiobookFactory.build(title="Never committed"))
        await session.flush()
        assert await session.scalar(newer) == 1  # written in the same transaction
        await session.rollback()
        assert await session.scalar(newer) == 0
    await database.get_engine().dispose()


async def test_every_new_database_config_writes_outbox_rows_after_older_ones_are_collected(settings: Settings) -> None:
    """Processes open and drop configs (tests, commands); a new one must never be taken for an older, hooked one.

    SQLAlchemy's listener registry is keyed by ``id()``: a collected config's factory leaves its entry, and
    a new factory at the same address read as hooked. Its books never reached search (1 in 20 here).
    """
    written: list[int] = []
    for attempt in range(25):
        database = sqlalchemy_config(settings)
        install_catalog_outbox(database)
        async with database.get_session() as session:
            before = await session.scalar(select(func.coalesce(func.max(CatalogOutbox.id), 0)))
            session.add(AudiobookFactory.build(title=f"Config {attempt}"))
            await session.commit()
            written.append(await session.scalar(select(func.count()).where(CatalogOutbox.id > before)) or 0)
        await database.get_engine().dispose()
        del database, session
        gc.collect()  # the old factory goes, and its address may be the next one's
    assert all(written), written

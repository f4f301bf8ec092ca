"""Cached discovery reads: from the shared cache, ended by a write, validated by ETag; personal answers never shared."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from advanced_alchemy.config import SQLAlchemyAsyncConfig
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update

from audioverse.catalog.models import Audiobook
from audioverse.config import Settings
from audioverse.jobs import Job
from audioverse.response_cache import response_cache_config
from tests.accounts.test_auth_flow import bearer
from tests.catalog.fixtures import MakeBook, Tokens
from tests.services import database_for

Client = AsyncTestClient[Litestar]


async def retitle_behind_the_apps_back(settings: Settings, book_id: int, title: str) -> None:
    """A write the app never hears of: what a cached answer still shows proves it came from the cache."""
    async with database_for(settings) as database, database.get_session() as session:
        await session.execute(update(Audiobook).where(Audiobook.id == book_id).values(title=title))
        await session.commit()


async def background_jobs_done(settings: Settings) -> None:
    """Wait until every job the test's writes asked for has run (a search drain ends cached answers when done)."""
    async with database_for(settings) as database:
        with anyio.fail_after(30):
            while await pending_jobs(database):  # noqa: ASYNC110 - polling work another task does
                await anyio.sleep(0.05)


async def pending_jobs(database: SQLAlchemyAsyncConfig) -> int:
    async with database.get_session() as session:
        return int(await session.scalar(select(func.count()).select_from(Job)) or 0)


async def title_of(client: Client, book_id: int, **headers: str) -> str:
    response = await client.get(f"/api/audiobooks/{book_id}/", headers=headers)
    assert response.status_code == 200, response.text
    title: str = response.json()["title"]
    return title


async def test_an_edit_through_the_api_is_visible_on_the_very_next_read(
    client: Client, make_book: MakeBook, settings: Settings, curator: Tokens, tag: str
) -> None:
    book_id = await make_book(title=f"First title {tag}")
    await background_jobs_done(settings)
    listed = {"q": tag, "limit": 5}
    assert await title_of(client, book_id) == f"First title {tag}"
    assert [item["title"] for item in (await client.get("/api/authors/", params=listed)).json()["items"]] == []
    await retitle_behind_the_apps_back(settings, book_id, "Changed behind its back")
    assert await title_of(client, book_id) == f"First title {tag}"  # the cached answer

    edited = await client.patch(
        f"/api/audiobooks/{book_id}/", headers=bearer(curator), json={"title": f"Edited title {tag}"}
    )
    assert edited.status_code == 200, edited.text
    assert await title_of(client, book_id) == f"Edited title {tag}"
    # Every cached answer ended, not only the edited book's: a list that did not show it reads afresh.
    renamed = await client.patch(
        f"/api/audiobooks/{book_id}/", headers=bearer(curator), json={"authors": [f"Writer {tag}"]}
    )
    assert renamed.status_code == 200, renamed.text
    authors = (await client.get("/api/authors/", params=listed)).json()["items"]
    assert [author["name"] for author in authors] == [f"Writer {tag}"]


async def test_a_matching_etag_gets_304_without_a_body(client: Client, make_book: MakeBook, tag: str) -> None:
    book_id = await make_book(title=f"Tagged {tag}")
    first = await client.get(f"/api/audiobooks/{book_id}/")
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "public, no-cache"
    assert "vary" not in first.headers  # the same answer for every caller: a CDN keeps one copy
    for validator in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await client.get(f"/api/audiobooks/{book_id}/", headers={"If-None-Match": validator})
        assert again.status_code == 304, validator
        assert again.content == b""
        assert again.headers["etag"] == etag
    stale = await client.get(f"/api/audiobooks/{book_id}/", headers={"If-None-Match": '"not-this-one"'})
    assert stale.status_code == 200
    assert stale.json()["title"] == f"Tagged {tag}"
    # Errors carry no validator, and no 304 stands in for them.
    missing = await client.get("/api/audiobooks/999999999/", headers={"If-None-Match": "*"})
    assert missing.status_code == 404
    assert "etag" not in missing.headers


async def test_an_edit_changes_the_etag(client: Client, make_book: MakeBook, curator: Tokens, tag: str) -> None:
    book_id = await make_book(title=f"Before {tag}")
    etag = (await client.get(f"/api/audiobooks/{book_id}/")).headers["etag"]
    edited = await client.patch(f"/api/audiobooks/{book_id}/", headers=bearer(curator), json={"title": f"After {tag}"})
    assert edited.status_code == 200
    after = await client.get(f"/api/audiobooks/{book_id}/", headers={"If-None-Match": etag})
    assert after.status_code == 200
    assert after.headers["etag"] != etag


async def test_signed_in_callers_share_catalog_answers_but_never_personal_ones(
    client: Client, make_book: MakeBook, settings: Settings, uploader: Tokens, other_listener: Tokens, tag: str
) -> None:
    book_id = await make_book(title=f"Shared {tag}")
    await background_jobs_done(settings)
    assert await title_of(client, book_id) == f"Shared {tag}"
    await retitle_behind_the_apps_back(settings, book_id, f"Behind {tag}")
    # A book's page is the same whoever asks: a signed-in reader is answered from the shared cache too.
    signed_in = await client.get(f"/api/audiobooks/{book_id}/", headers=bearer(uploader))
    assert signed_in.json()["title"] == f"Shared {tag}"
    assert signed_in.headers["cache-control"] == "public, no-cache"
    listed = await client.get("/api/audiobooks/", params={"sort": "-created_at", "limit": 5}, headers=bearer(uploader))
    again = await client.get("/api/audiobooks/", params={"limit": 5, "sort": "-created_at"})
    assert listed.headers["etag"] == again.headers["etag"]

    # A personal shelf is computed for each caller: one listener's never reaches another or the anonymous.
    added = await client.post(f"/api/library/{book_id}/", headers=bearer(uploader))
    assert added.status_code == 201, added.text
    shelves: list[Any] = []
    for headers in (bearer(uploader), bearer(other_listener), {}):
        response = await client.get("/api/audiobooks/recommended/", headers=headers)
        assert response.status_code == 200, response.text
        shelves.append([item["audiobook"]["id"] for item in response.json()["items"]])
        if headers:
            assert response.headers["cache-control"] == "private, no-cache"
            assert response.headers["vary"] == "Authorization"
    assert book_id not in shelves[0]  # the uploader keeps it in their library
    assert book_id in shelves[1]
    assert book_id in shelves[2]


@pytest.mark.search
async def test_every_search_that_finds_nothing_reaches_the_report(
    client: Client, make_book: MakeBook, settings: Settings, curator: Tokens, tag: str
) -> None:
    await make_book(title=f"Present {tag}")
    await background_jobs_done(settings)
    for _ in range(3):
        response = await client.get("/api/audiobooks/search/", params={"q": f"absent{tag}"})
        assert response.json()["total"] == 0
    report = await client.get("/api/admin/search/zero-results/", headers=bearer(curator))
    assert {item["query"]: item["searches"] for item in report.json()["items"]}[f"absent{tag}"] == 3
    # A search that found something is answered from the cache the second time, the same.
    found = [await client.get("/api/audiobooks/search/", params={"q": f"present {tag}"}) for _ in range(2)]
    assert [response.json()["total"] for response in found] == [1, 1]
    assert found[0].headers["etag"] == found[1].headers["etag"]


def test_a_cache_of_zero_seconds_keeps_nothing() -> None:
    config = response_cache_config(0)
    assert config.default_expiration is None
    request: Any = type("Request", (), {"scope": {"headers": []}})()
    assert config.key_builder(request) == "uncached"
    assert not config.cache_response_filter({"headers": [], "state": {}}, 200)  # type: ignore[typeddict-item]

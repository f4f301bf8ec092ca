"""Recommendation routes on hand-made listening data whose answers are known, on both profiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from advanced_alchemy.filters import LimitOffset
from litestar import Litestar
from litestar.stores.memory import MemoryStore
from litestar.testing import AsyncTestClient
from taskiq import InMemoryBroker

from audioverse.catalog.indexing import search_store_for
from audioverse.config import Settings
from audioverse.db import sqlalchemy_config
from audioverse.jobs import TaskQueue
from audioverse.listening.models import LibraryEntry, ListeningLedger, ListeningProgress
from audioverse.recommendations.services import RecommendationCache, RecommendationService
from audioverse.reviews.models import Review
from tests.accounts.test_auth_flow import bearer
from tests.catalog.fixtures import MakeBook, Tokens, account

Client = AsyncTestClient[Litestar]
REBUILD_SECONDS = 90


async def listen(
    settings: Settings,
    user_id: int,
    book_id: int,
    *,
    finished: bool = True,
    rating: int | None = None,
    library: bool = False,
    days_ago: int = 1,
) -> None:
    """A listener's history with one book, written as the listening and review routes would leave it."""
    database = sqlalchemy_config(settings)
    at = datetime.now(UTC) - timedelta(days=days_ago)
    async with database.get_session() as session:
        session.add(ListeningLedger(user_id=user_id, audiobook_id=book_id, day=at.date(), seconds=3000.0))
        session.add(
            ListeningProgress(
                user_id=user_id,
                audiobook_id=book_id,
                position_seconds=3600.0 if finished else 1200.0,
                is_completed=finished,
                playback_speed=1.0,
                client_updated_at=at,
                effective_at=at,
                last_listened_at=at,
                completed_at=at if finished else None,
            )
        )
        if rating is not None:
            session.add(Review(user_id=user_id, audiobook_id=book_id, rating=rating))
        if library:
            session.add(LibraryEntry(user_id=user_id, audiobook_id=book_id))
        await session.commit()
    await database.get_engine().dispose()


async def listeners(client: Client, settings: Settings, count: int) -> list[Tokens]:
    return [await account(client, settings, verified=True) for _ in range(count)]


async def rebuild(client: Client, curator: Tokens) -> dict[str, Any]:
    """Start a rebuild (after any running one) and wait for it to finish; returns its status."""
    status: dict[str, Any] = {}
    with anyio.fail_after(REBUILD_SECONDS):
        while True:
            started = await client.post("/api/admin/recommendations/rebuild/", headers=bearer(curator))
            if started.status_code == 202:
                break
            assert started.status_code == 409, started.text
            await anyio.sleep(0.2)
        while status.get("state") in {None, "running"}:
            await anyio.sleep(0.1)
            response = await client.get("/api/admin/recommendations/status/", headers=bearer(curator))
            status = response.json()
    assert status["state"] == "succeeded", status
    return status


async def shelf(client: Client, path: str, tokens: Tokens | None = None) -> dict[str, Any]:
    response = await client.get(path, headers=bearer(tokens) if tokens else {})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(page: dict[str, Any], kind: str | None = None) -> list[int]:
    return [item["audiobook"]["id"] for item in page["items"] if kind is None or item["reason"]["kind"] == kind]


async def distinct_books(make_book: MakeBook, tag: str, count: int) -> list[int]:
    """Books that share no author, narrator, series or genre with each other."""
    return [
        await make_book(title=f"{tag} book {n}", authors=(f"{tag} author {n}",), genres=(f"{tag} genre {n}",))
        for n in range(count)
    ]


async def test_co_listened_books_are_found_by_both_routes_and_the_own_books_never(
    client: Client, settings: Settings, make_book: MakeBook, curator: Tokens, tag: str
) -> None:
    first, second, disliked, finished = await distinct_books(make_book, tag, 4)
    crowd = await listeners(client, settings, 3)
    for member in crowd:
        for book in (first, second, disliked, finished):
            await listen(settings, member["user_id"], book)
    (me,) = await listeners(client, settings, 1)
    await listen(settings, me["user_id"], first)
    await listen(settings, me["user_id"], finished)
    await listen(settings, me["user_id"], disliked, finished=False, rating=2)
    await rebuild(client, curator)

    similar = await shelf(client, f"/api/audiobooks/{first}/similar/")
    assert second in ids(similar, "listened_with")
    reason = next(item["reason"] for item in similar["items"] if item["audiobook"]["id"] == second)
    assert reason == {"kind": "listened_with", "audiobook_id": first, "title": f"{tag} book 0"}
    assert first not in ids(similar)
    assert {"items", "total", "limit", "offset", "generated_at"} <= similar.keys()

    mine = await shelf(client, "/api/audiobooks/recommended/", me)
    assert second in ids(mine, "listened_with")
    assert not {first, finished, disliked} & set(ids(mine))
    # Logged in, the similar list leaves out the caller's own books too.
    assert not {finished, disliked} & set(ids(await shelf(client, f"/api/audiobooks/{first}/similar/", me)))


async def test_a_single_listeners_co_listens_stay_hidden(
    client: Client, settings: Settings, make_book: MakeBook, curator: Tokens, tag: str
) -> None:
    base, alone, pair = await distinct_books(make_book, tag, 3)
    one, two = await listeners(client, settings, 2)
    await listen(settings, one["user_id"], base)
    await listen(settings, one["user_id"], alone)
    # Two listeners share ``pair``: still too few, since a viewer who is one of them would see the other.
    for member in (one, two):
        await listen(settings, member["user_id"], pair)
    await listen(settings, two["user_id"], base)
    await rebuild(client, curator)
    similar = await shelf(client, f"/api/audiobooks/{base}/similar/")
    assert not {alone, pair} & set(ids(similar, "listened_with"))
    (newcomer,) = await listeners(client, settings, 1)
    await listen(settings, newcomer["user_id"], base)
    await rebuild(client, curator)
    assert not {alone, pair} & set(ids(await shelf(client, "/api/audiobooks/recommended/", newcomer), "listened_with"))


async def test_cold_users_and_unheard_books_still_get_five(
    client: Client, settings: Settings, make_book: MakeBook, curator: Tokens, tag: str
) -> None:
    await distinct_books(make_book, tag, 6)
    unheard = await make_book(title=f"{tag} unheard", authors=(f"{tag} author 0",), genres=(f"{tag} genre 1",))
    (cold,) = await listeners(client, settings, 1)
    for tokens in (cold, None):
        page = await shelf(client, "/api/audiobooks/recommended/?limit=5", tokens)
        assert len(page["items"]) == 5
        assert page["total"] >= 5
    anonymous = await shelf(client, "/api/audiobooks/recommended/")
    assert {item["reason"]["kind"] for item in anonymous["items"]} == {"popular"}
    similar = await shelf(client, f"/api/audiobooks/{unheard}/similar/")
    assert len(similar["items"]) >= 5
    # It shares an author with book 0: that neighbour comes first, and says why.
    first = similar["items"][0]
    assert first["reason"]["kind"] == "same_author"
    assert first["reason"]["audiobook_id"] == unheard
    # The same once a model exists (the unheard book then has content neighbours in the cache).
    await rebuild(client, curator)
    assert len((await shelf(client, f"/api/audiobooks/{unheard}/similar/"))["items"]) >= 5
    assert len((await shelf(client, "/api/audiobooks/recommended/", cold))["items"]) >= 5


async def test_genre_filter_never_leaks_another_genre(
    client: Client, settings: Settings, make_book: MakeBook, curator: Tokens, tag: str
) -> None:
    inside = [
        await make_book(title=f"{tag} in {n}", authors=(f"{tag} a{n}",), genres=(f"{tag} wanted",)) for n in range(3)
    ]
    outside = await distinct_books(make_book, tag, 3)
    crowd = await listeners(client, settings, 3)
    for member in crowd:
        for book in [*inside[:2], *outside]:
            await listen(settings, member["user_id"], book)
    (me,) = await listeners(client, settings, 1)
    await listen(settings, me["user_id"], outside[0])
    await rebuild(client, curator)
    slug = f"{tag}-wanted"
    for tokens in (me, None):
        page = await shelf(client, f"/api/audiobooks/recommended/?genre={slug}", tokens)
        assert page["items"]
        for item in page["items"]:
            assert slug in {genre["slug"] for genre in item["audiobook"]["genres"]}
    assert set(ids(await shelf(client, f"/api/audiobooks/recommended/?genre={slug}", me))) <= set(inside)
    missing = await client.get("/api/audiobooks/recommended/?genre=no-such-genre-at-all")
    assert missing.status_code == 404


async def test_a_rebuild_serves_the_old_lists_until_the_swap(
    client: Client, settings: Settings, make_book: MakeBook, curator: Tokens, tag: str
) -> None:
    first, second, third = await distinct_books(make_book, tag, 3)
    crowd = await listeners(client, settings, 3)
    for member in crowd:
        await listen(settings, member["user_id"], first)
        await listen(settings, member["user_id"], second)
    await rebuild(client, curator)
    path = f"/api/audiobooks/{first}/similar/"
    before = await shelf(client, path)
    for member in crowd:
        await listen(settings, member["user_id"], third, days_ago=0)
    started = await client.post("/api/admin/recommendations/rebuild/", headers=bearer(curator))
    assert started.status_code == 202, started.text
    seen: list[dict[str, Any]] = []
    with anyio.fail_after(REBUILD_SECONDS):
        while True:
            seen.append(await shelf(client, path))
            status = (await client.get("/api/admin/recommendations/status/", headers=bearer(curator))).json()
            if status["state"] != "running":
                break
    assert status["state"] == "succeeded", status
    after = await shelf(client, path)
    assert third in ids(after, "listened_with")
    assert after["generated_at"] != before["generated_at"]
    versions = {(before["generated_at"], str(ids(before))), (after["generated_at"], str(ids(after)))}
    for page in seen:
        # Each read is wholly the old lists or wholly the new ones.
        assert (page["generated_at"], str(ids(page))) in versions


async def test_a_second_rebuild_is_refused_while_one_runs(client: Client, settings: Settings, curator: Tokens) -> None:
    # The app's own store in memory; another client of the same Redis keys (this test's loop) in production.
    store = search_store_for(settings) if settings.redis_url else client.app.state.search_store
    cache = RecommendationCache(store)
    claim = await cache.claim()
    assert claim is not None
    try:
        refused = await client.post("/api/admin/recommendations/rebuild/", headers=bearer(curator))
        assert refused.status_code == 409
        status = (await client.get("/api/admin/recommendations/status/", headers=bearer(curator))).json()
        assert status["state"] == "running"
    finally:
        claim.status.state = "failed"
        await cache.write_status(claim)


async def test_curator_routes_are_for_curators(client: Client, settings: Settings) -> None:
    (listener,) = await listeners(client, settings, 1)
    assert (await client.post("/api/admin/recommendations/rebuild/", headers=bearer(listener))).status_code == 403
    assert (await client.get("/api/admin/recommendations/status/", headers=bearer(listener))).status_code == 403
    assert (await client.get("/api/audiobooks/987654321/similar/")).status_code == 404


async def test_a_book_removed_from_the_library_is_never_recommended(
    client: Client, settings: Settings, make_book: MakeBook, curator: Tokens, tag: str
) -> None:
    first, removed = await distinct_books(make_book, tag, 2)
    for member in await listeners(client, settings, 3):
        await listen(settings, member["user_id"], first)
        await listen(settings, member["user_id"], removed)
    (me,) = await listeners(client, settings, 1)
    await listen(settings, me["user_id"], first)
    await rebuild(client, curator)
    assert removed in ids(await shelf(client, "/api/audiobooks/recommended/", me), "listened_with")
    assert (await client.post(f"/api/library/{removed}/", headers=bearer(me))).status_code == 201
    assert (await client.delete(f"/api/library/{removed}/", headers=bearer(me))).status_code == 204
    assert removed not in ids(await shelf(client, "/api/audiobooks/recommended/", me))
    await rebuild(client, curator)
    assert removed not in ids(await shelf(client, "/api/audiobooks/recommended/", me))
    assert removed not in ids(await shelf(client, f"/api/audiobooks/{first}/similar/", me))


async def test_a_listeners_list_is_refreshed_soon_after_their_listening_changes(
    client: Client, settings: Settings, make_book: MakeBook, curator: Tokens, tag: str
) -> None:
    first, second, third, fourth = await distinct_books(make_book, tag, 4)
    for member in await listeners(client, settings, 3):
        for book in (first, second, third, fourth):
            await listen(settings, member["user_id"], book, days_ago=3)
    (me,) = await listeners(client, settings, 1)
    await listen(settings, me["user_id"], first, days_ago=2)
    await rebuild(client, curator)
    before = await shelf(client, "/api/audiobooks/recommended/", me)
    assert third in ids(before, "listened_with")
    await listen(settings, me["user_id"], third, days_ago=0)
    # The next read leaves the finished book out at once and asks the worker for a fresh list.
    page = await shelf(client, "/api/audiobooks/recommended/", me)
    assert third not in ids(page)
    with anyio.fail_after(REBUILD_SECONDS):
        while page["generated_at"] == before["generated_at"]:
            await anyio.sleep(0.2)
            page = await shelf(client, "/api/audiobooks/recommended/", me)
    assert third not in ids(page)
    assert {second, fourth} <= set(ids(page, "listened_with"))


class BrokenStore(MemoryStore):
    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        raise ConnectionError("the cache is down")


async def test_a_broken_cache_still_gives_a_shelf(settings: Settings, make_book: MakeBook, tag: str) -> None:
    books = await distinct_books(make_book, tag, 6)  # similar() leaves out the book itself: five others
    database = sqlalchemy_config(settings)
    async with database.get_session() as session:
        service = RecommendationService(session=session)
        popular = await service.recommended(BrokenStore(), TaskQueue(InMemoryBroker()), None, None, LimitOffset(5, 0))
        similar = await service.similar(BrokenStore(), None, books[0], LimitOffset(5, 0))
    await database.get_engine().dispose()
    assert len(popular.items) == 5
    assert len(similar.items) == 5

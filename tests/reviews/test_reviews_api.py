"""Reviews: permissions for each caller, one per book, exact helpful counts, moderation, aggregates."""

from __future__ import annotations

import asyncio
import random
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import anyio
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import event, func, select, update
from sqlalchemy.util import await_only

from audioverse.catalog.models import Audiobook
from audioverse.catalog.outbox import install_catalog_outbox
from audioverse.config import Settings
from audioverse.db import sqlalchemy_config
from audioverse.reviews.models import Review, ReviewStatus
from audioverse.reviews.services import recompute_aggregates, repair_helpful_counts
from tests.accounts.test_auth_flow import bearer
from tests.catalog.fixtures import MakeBook, Tokens, account

Client = AsyncTestClient[Litestar]
AGGREGATE_WAIT_SECONDS = 20


async def book_figures(client: Client, book_id: int) -> tuple[float, int, int]:
    book = (await client.get(f"/api/audiobooks/{book_id}/")).json()
    return book["average_rating"], book["total_ratings"], book["total_reviews"]


async def wait_for_figures(client: Client, book_id: int, expected: tuple[float, int, int]) -> None:
    with anyio.fail_after(AGGREGATE_WAIT_SECONDS):
        while await book_figures(client, book_id) != expected:  # noqa: ASYNC110 - polling another process
            await anyio.sleep(0.05)


async def review(client: Client, tokens: Tokens, book_id: int, rating: int, text: str = "") -> dict[str, Any]:
    response = await client.post(
        f"/api/audiobooks/{book_id}/reviews/", headers=bearer(tokens), json={"rating": rating, "review_text": text}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_create_list_and_aggregate(
    client: Client, make_book: MakeBook, uploader: Tokens, other_listener: Tokens
) -> None:
    book_id = await make_book(title="Reviewed")
    first = await review(client, uploader, book_id, 5, "Wonderful narration.")
    assert first["username"]
    await review(client, other_listener, book_id, 2)
    await wait_for_figures(client, book_id, (3.5, 2, 1))
    listed = (await client.get(f"/api/audiobooks/{book_id}/reviews/")).json()
    assert listed["total"] == 2
    by_rating = (await client.get(f"/api/audiobooks/{book_id}/reviews/", params={"rating": 5})).json()
    assert [r["id"] for r in by_rating["items"]] == [first["id"]]


async def test_one_review_per_book_is_409(client: Client, make_book: MakeBook, uploader: Tokens) -> None:
    book_id = await make_book(title="Once")
    await review(client, uploader, book_id, 4)
    again = await client.post(f"/api/audiobooks/{book_id}/reviews/", headers=bearer(uploader), json={"rating": 3})
    assert again.status_code == 409
    assert (await client.get(f"/api/audiobooks/{book_id}/reviews/")).json()["total"] == 1


async def test_who_may_review(client: Client, make_book: MakeBook, unverified: Tokens, uploader: Tokens) -> None:
    book_id = await make_book(title="Gatekept")
    url = f"/api/audiobooks/{book_id}/reviews/"
    assert (await client.post(url, json={"rating": 3})).status_code == 401
    assert (await client.post(url, headers=bearer(unverified), json={"rating": 3})).status_code == 403
    for bad in ({"rating": 0}, {"rating": 6}, {"rating": "five"}, {}, {"rating": 3, "extra": 1}):
        assert (await client.post(url, headers=bearer(uploader), json=bad)).status_code in {400, 422}, bad
    missing = await client.post("/api/audiobooks/987654321/reviews/", headers=bearer(uploader), json={"rating": 3})
    assert missing.status_code == 404


async def test_edit_and_delete_permissions(
    client: Client, make_book: MakeBook, uploader: Tokens, other_listener: Tokens, curator: Tokens
) -> None:
    book_id = await make_book(title="Contested")
    mine = await review(client, uploader, book_id, 3, "Fine.")
    url = f"/api/reviews/{mine['id']}/"
    assert (await client.patch(url, headers=bearer(other_listener), json={"rating": 1})).status_code == 403
    assert (await client.patch(url, headers=bearer(curator), json={"rating": 1})).status_code == 403
    edited = await client.patch(url, headers=bearer(uploader), json={"rating": 4})
    assert edited.json()["rating"] == 4
    assert edited.json()["review_text"] == "Fine."
    replaced = await client.put(url, headers=bearer(uploader), json={"review_text": "Better on a second listen."})
    assert replaced.json()["review_text"] == "Better on a second listen."
    await wait_for_figures(client, book_id, (4.0, 1, 1))
    assert (await client.delete(url, headers=bearer(other_listener))).status_code == 403
    assert (await client.delete(url, headers=bearer(uploader))).status_code == 204
    await wait_for_figures(client, book_id, (0.0, 0, 0))
    theirs = await review(client, other_listener, book_id, 1)
    assert (await client.delete(f"/api/reviews/{theirs['id']}/", headers=bearer(curator))).status_code == 204
    assert (await client.delete(f"/api/reviews/{theirs['id']}/", headers=bearer(curator))).status_code == 404


async def test_helpful_votes_are_idempotent_and_not_for_oneself(
    client: Client, make_book: MakeBook, uploader: Tokens, other_listener: Tokens
) -> None:
    book_id = await make_book(title="Helpful")
    mine = await review(client, uploader, book_id, 5)
    url = f"/api/reviews/{mine['id']}/helpful/"
    assert (await client.post(url, headers=bearer(uploader))).status_code == 403
    assert (await client.post(url)).status_code == 401
    counts = [(await client.post(url, headers=bearer(other_listener))).json()["helpful_count"] for _ in range(3)]
    assert counts == [1, 1, 1]
    assert (await client.delete(url, headers=bearer(other_listener))).json()["helpful_count"] == 0
    assert (await client.delete(url, headers=bearer(other_listener))).json()["helpful_count"] == 0
    assert (await client.post("/api/reviews/987654321/helpful/", headers=bearer(other_listener))).status_code == 404


async def test_helpful_votes_need_a_verified_email(
    client: Client, make_book: MakeBook, uploader: Tokens, unverified: Tokens
) -> None:
    book_id = await make_book(title="Verified votes")
    mine = await review(client, uploader, book_id, 5)
    url = f"/api/reviews/{mine['id']}/helpful/"
    for method in (client.post, client.delete):
        refused = await method(url, headers=bearer(unverified))
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "email" in refused.json()["detail"].lower()
    listed = (await client.get(f"/api/audiobooks/{book_id}/reviews/")).json()
    assert listed["items"][0]["helpful_count"] == 0


async def test_helpful_votes_leave_updated_at_alone(
    client: Client, make_book: MakeBook, settings: Settings, uploader: Tokens, other_listener: Tokens
) -> None:
    book_id = await make_book(title="Untouched")
    mine = await review(client, uploader, book_id, 4, "Steady pace.")
    url = f"/api/reviews/{mine['id']}/helpful/"
    await anyio.sleep(0.01)  # a bumped timestamp would differ from the creation time
    voted = (await client.post(url, headers=bearer(other_listener))).json()
    assert (voted["helpful_count"], voted["updated_at"]) == (1, mine["updated_at"])
    taken_back = (await client.delete(url, headers=bearer(other_listener))).json()
    assert (taken_back["helpful_count"], taken_back["updated_at"]) == (0, mine["updated_at"])
    database = sqlalchemy_config(settings)
    async with database.get_session() as session:
        await repair_helpful_counts(session)
        await session.commit()
    await database.get_engine().dispose()
    [listed] = (await client.get(f"/api/audiobooks/{book_id}/reviews/")).json()["items"]
    assert (listed["helpful_count"], listed["updated_at"]) == (0, mine["updated_at"])


async def test_sorts(
    client: Client, make_book: MakeBook, settings: Settings, uploader: Tokens, other_listener: Tokens, curator: Tokens
) -> None:
    book_id = await make_book(title="Sorted")
    low = await review(client, uploader, book_id, 1)
    high = await review(client, other_listener, book_id, 5)
    mid = await review(client, curator, book_id, 3)
    await client.post(f"/api/reviews/{low['id']}/helpful/", headers=bearer(other_listener))
    expectations = {
        "-helpful_count": low["id"],
        "-created_at": mid["id"],
        "-rating": high["id"],
        "rating": low["id"],
    }
    for sort, first in expectations.items():
        items = (await client.get(f"/api/audiobooks/{book_id}/reviews/", params={"sort": sort})).json()["items"]
        assert items[0]["id"] == first, sort
    assert (await client.get(f"/api/audiobooks/{book_id}/reviews/", params={"sort": "helpful"})).status_code == 422


async def test_pages_of_reviews_count_every_visible_review(
    client: Client, make_book: MakeBook, uploader: Tokens, other_listener: Tokens, curator: Tokens
) -> None:
    book_id = await make_book(title="Paged")
    written = [await review(client, tokens, book_id, 4) for tokens in (uploader, other_listener, curator)]
    url = f"/api/audiobooks/{book_id}/reviews/"
    pages = [(await client.get(url, params={"limit": 2, "offset": offset})).json() for offset in (0, 2)]
    assert [(page["total"], page["limit"], page["offset"], len(page["items"])) for page in pages] == [
        (3, 2, 0, 2),
        (3, 2, 2, 1),
    ]
    assert sorted(item["id"] for page in pages for item in page["items"]) == sorted(r["id"] for r in written)
    # Past the last review the page is empty and the total still counts them all.
    beyond = (await client.get(url, params={"limit": 2, "offset": 10})).json()
    assert (beyond["items"], beyond["total"]) == ([], 3)


async def test_hidden_reviews_are_not_listed_or_counted(
    client: Client, make_book: MakeBook, uploader: Tokens, other_listener: Tokens, curator: Tokens
) -> None:
    book_id = await make_book(title="Moderated")
    spam = await review(client, uploader, book_id, 1, "Buy cheap pills")
    await review(client, other_listener, book_id, 5, "Lovely")
    await wait_for_figures(client, book_id, (3.0, 2, 2))
    url = f"/api/reviews/{spam['id']}/moderate/"
    refused = await client.post(url, headers=bearer(other_listener), json={"status": "hidden", "reason": "spam"})
    assert refused.status_code == 403
    hidden = await client.post(url, headers=bearer(curator), json={"status": "hidden", "reason": "spam"})
    assert hidden.status_code == 200
    assert hidden.json()["status"] == "hidden"
    await wait_for_figures(client, book_id, (5.0, 1, 1))
    listed = (await client.get(f"/api/audiobooks/{book_id}/reviews/")).json()
    assert [r["review_text"] for r in listed["items"]] == ["Lovely"]
    assert (await client.post(f"/api/reviews/{spam['id']}/helpful/", headers=bearer(other_listener))).status_code == 404
    bad = await client.post(url, headers=bearer(curator), json={"status": "deleted", "reason": "x"})
    assert bad.status_code in {400, 422}
    shown = await client.post(url, headers=bearer(curator), json={"status": "visible", "reason": "appeal"})
    assert shown.json()["status"] == "visible"
    await wait_for_figures(client, book_id, (3.0, 2, 2))


async def test_aggregates_equal_sql_after_a_random_burst(
    client: Client, make_book: MakeBook, settings: Settings
) -> None:
    rng = random.Random(7)
    book_ids = [await make_book(title=f"Burst {n}") for n in range(3)]
    reviewers = [await account(client, settings, verified=True) for _ in range(6)]
    written: dict[tuple[int, int], int] = {}
    for _ in range(30):
        who = rng.randrange(len(reviewers))
        book = rng.choice(book_ids)
        tokens = reviewers[who]
        if (who, book) in written and rng.random() < 0.4:
            await client.delete(f"/api/reviews/{written.pop((who, book))}/", headers=bearer(tokens))
        elif (who, book) in written:
            await client.patch(
                f"/api/reviews/{written[(who, book)]}/", headers=bearer(tokens), json={"rating": rng.randint(1, 5)}
            )
        else:
            written[(who, book)] = (await review(client, tokens, book, rng.randint(1, 5), rng.choice(["", "text"])))[
                "id"
            ]
    database = sqlalchemy_config(settings)
    for book in book_ids:
        async with database.get_session() as session:
            row = (
                await session.execute(
                    select(func.avg(Review.rating), func.count()).where(
                        Review.audiobook_id == book, Review.status == ReviewStatus.VISIBLE
                    )
                )
            ).one()
            texts = await session.scalar(
                select(func.count()).where(Review.audiobook_id == book, Review.review_text != "")
            )
        average = float(Decimal(str(row[0] or 0)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
        await wait_for_figures(client, book, (average, row[1], texts or 0))
    await database.get_engine().dispose()


async def test_a_recompute_that_read_before_a_newer_review_does_not_write_over_its_result(
    client: Client, make_book: MakeBook, settings: Settings, uploader: Tokens, other_listener: Tokens
) -> None:
    """Two recomputes of one book: the first reads, a review commits, the second recomputes, the first writes."""
    book_id = await make_book(title="Raced")
    await review(client, uploader, book_id, 5)
    await wait_for_figures(client, book_id, (5.0, 1, 0))
    first, second = sqlalchemy_config(settings), sqlalchemy_config(settings)
    async with first.get_session() as session:  # stale figures, so the first recompute has something to write
        await session.execute(update(Audiobook).where(Audiobook.id == book_id).values(total_ratings=0))
        await session.commit()

    async def newer_review_and_its_recompute() -> None:
        async with second.get_session() as session:
            session.add(Review(user_id=other_listener["user_id"], audiobook_id=book_id, rating=1))
            await session.commit()
            await recompute_aggregates(session, [book_id])
            await session.commit()

    interleaved: list[asyncio.Task[None]] = []

    def before_the_first_writes(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("UPDATE audiobook") and not interleaved:
            interleaved.append(asyncio.get_running_loop().create_task(newer_review_and_its_recompute()))
            # Unlocked, the other side finishes at once and this write lands on top of its result;
            # locked, it waits for this transaction, and a second is plenty to tell the two apart.
            await_only(asyncio.wait(interleaved, timeout=1))

    event.listen(first.get_engine().sync_engine, "before_cursor_execute", before_the_first_writes)
    async with first.get_session() as session:
        assert await recompute_aggregates(session, [book_id]) == 1
        await session.commit()
    await interleaved[0]
    async with first.get_session() as session:
        book = await session.get(Audiobook, book_id)
        assert book is not None
        assert (book.average_rating, book.total_ratings) == (Decimal("3.00"), 2)
    for database in (first, second):
        await database.get_engine().dispose()


async def test_periodic_repair_fixes_drift(
    client: Client, make_book: MakeBook, settings: Settings, uploader: Tokens
) -> None:
    book_id = await make_book(title="Drifted")
    await review(client, uploader, book_id, 4)
    await wait_for_figures(client, book_id, (4.0, 1, 0))
    database = sqlalchemy_config(settings)
    install_catalog_outbox(database)  # the drift and its repair reach the search index, as a job's would
    async with database.get_session() as session:
        book = await session.get(Audiobook, book_id)
        assert book is not None
        book.average_rating, book.total_ratings = Decimal("1.00"), 99
        await session.execute(Review.__table__.update().where(Review.audiobook_id == book_id).values(helpful_count=7))
        await session.commit()
    async with database.get_session() as session:
        await repair_helpful_counts(session)
        assert await recompute_aggregates(session) >= 1
        await session.commit()
    await database.get_engine().dispose()
    assert await book_figures(client, book_id) == (4.0, 1, 0)
    listed = (await client.get(f"/api/audiobooks/{book_id}/reviews/")).json()
    assert listed["items"][0]["helpful_count"] == 0


async def test_fifty_concurrent_helpful_votes_count_exactly(
    client: Client, make_book: MakeBook, settings: Settings, uploader: Tokens
) -> None:
    book_id = await make_book(title="Popular")
    target = await review(client, uploader, book_id, 5)
    voters = [await account(client, settings, verified=True) for _ in range(50)]
    url = f"/api/reviews/{target['id']}/helpful/"
    statuses: list[int] = []

    async def vote(tokens: Tokens) -> None:
        statuses.append((await client.post(url, headers=bearer(tokens))).status_code)

    async with anyio.create_task_group() as group:
        for tokens in voters:
            group.start_soon(vote, tokens)
    assert statuses == [200] * 50
    listed = (await client.get(f"/api/audiobooks/{book_id}/reviews/")).json()
    assert listed["items"][0]["helpful_count"] == 50

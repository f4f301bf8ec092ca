"""Progress saves written in batches: each save still gets its own answer, and one save's fault fails no other."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from advanced_alchemy.config import SQLAlchemyAsyncConfig
from litestar import Litestar
from litestar.exceptions import NotAuthorizedException
from litestar.testing import AsyncTestClient
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from audioverse.accounts.auth import TokenHolder
from audioverse.accounts.models import User
from audioverse.config import Settings
from audioverse.errors import Conflict, NotFound, Unprocessable
from audioverse.listening.models import ListeningProgress
from audioverse.listening.progress_batch import ProgressSaves, next_batch
from audioverse.listening.schemas import ProgressRead, ProgressWrite
from tests.accounts.test_auth_flow import bearer
from tests.catalog.fixtures import MakeBook, Tokens, account

Client = AsyncTestClient[Litestar]


def holder(tokens: Tokens) -> TokenHolder:
    """What a token issued just now carries: its account is checked by the batch."""
    return TokenHolder(tokens["user_id"], datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1))


def an_hour_from_now() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


async def stored(database: SQLAlchemyAsyncConfig, tokens: Tokens, book_id: int) -> ListeningProgress | None:
    async with database.get_session() as session:
        found: ListeningProgress | None = await session.scalar(
            select(ListeningProgress).where(
                ListeningProgress.user_id == tokens["user_id"], ListeningProgress.audiobook_id == book_id
            )
        )
        return found


async def test_one_batch_of_mixed_saves_answers_each_its_own(
    client: Client, settings: Settings, database: SQLAlchemyAsyncConfig, make_book: MakeBook
) -> None:
    first, second = [await make_book(title=f"Batched {n}", duration=1000, chapters=4) for n in (1, 2)]
    listener, other, stale, outlived = [await account(client, settings, verified=True) for _ in range(4)]
    playing = await client.put(
        f"/api/progress/{first}/", headers=bearer(stale), json={"position_seconds": 500, "device_id": "phone"}
    )
    assert playing.status_code == 200, playing.text
    async with database.get_session() as session:
        # A role change after the token was issued ends it, as a password change does.
        await session.execute(
            update(User).where(User.id == outlived["user_id"]).values(credentials_changed_at=an_hour_from_now())
        )
        await session.commit()
    saves = ProgressSaves(database)
    answers = await asyncio.gather(
        saves.save(holder(listener), first, ProgressWrite(position_seconds=300.0, playback_speed=1.5)),
        saves.save(holder(listener), second, ProgressWrite(position_seconds=10.0)),
        saves.save(holder(other), first, ProgressWrite(position_seconds=999.0)),
        # Another device jumping back minutes, moments after the stored save: a player that started at 0.
        saves.save(holder(stale), first, ProgressWrite(position_seconds=0.0, device_id="tablet")),
        saves.save(holder(listener), 987654321, ProgressWrite(position_seconds=1.0)),
        saves.save(holder(other), second, ProgressWrite(position_seconds=1000.5)),
        saves.save(holder(outlived), first, ProgressWrite(position_seconds=5.0)),
        return_exceptions=True,
    )
    taken, second_taken, finished, refused, missing, past_end, signed_out = answers
    assert isinstance(taken, ProgressRead)
    assert (taken.position_seconds, taken.playback_speed, taken.current_chapter) == (300.0, 1.5, 2)
    assert isinstance(second_taken, ProgressRead)
    assert (second_taken.position_seconds, second_taken.current_chapter, second_taken.playback_speed) == (10.0, 1, 1.0)
    assert isinstance(finished, ProgressRead)
    assert finished.is_completed
    assert isinstance(refused, Conflict)
    assert refused.extra is not None
    assert refused.extra["progress"]["position_seconds"] == 500
    assert isinstance(missing, NotFound)
    assert isinstance(past_end, Unprocessable)
    assert isinstance(signed_out, NotAuthorizedException)
    kept = await stored(database, listener, first)
    assert kept is not None
    assert (kept.position_seconds, kept.playback_speed) == (300.0, 1.5)
    untouched = await stored(database, stale, first)
    assert untouched is not None
    assert untouched.position_seconds == 500
    assert await stored(database, other, second) is None
    assert await stored(database, outlived, first) is None


async def test_saves_of_one_place_sent_together_apply_in_order(
    client: Client, settings: Settings, database: SQLAlchemyAsyncConfig, make_book: MakeBook
) -> None:
    book_id = await make_book(title="One place", duration=1000)
    listener = await account(client, settings, verified=True)
    saves = ProgressSaves(database)
    sent = datetime.now(UTC)
    answers = await asyncio.gather(
        *(
            saves.save(
                holder(listener),
                book_id,
                ProgressWrite(position_seconds=float(n * 10), client_updated_at=sent + timedelta(seconds=n)),
            )
            for n in range(1, 4)
        )
    )
    assert [answer.position_seconds for answer in answers] == [10.0, 20.0, 30.0]
    final = await stored(database, listener, book_id)
    assert final is not None
    assert final.position_seconds == 30.0


async def test_a_save_the_database_refuses_fails_alone(
    client: Client, settings: Settings, database: SQLAlchemyAsyncConfig, make_book: MakeBook
) -> None:
    book_id = await make_book(title="Guarded", duration=1000)
    listener, other = [await account(client, settings, verified=True) for _ in range(2)]
    saves = ProgressSaves(database)
    # Built in code, a message skips the wire's checks; the table's own check refuses a negative position.
    broken = ProgressWrite(position_seconds=-5.0)
    good, bad = await asyncio.gather(
        saves.save(holder(listener), book_id, ProgressWrite(position_seconds=42.0)),
        saves.save(holder(other), book_id, broken),
        return_exceptions=True,
    )
    assert isinstance(good, ProgressRead)
    assert good.position_seconds == 42.0
    assert isinstance(bad, IntegrityError)
    kept = await stored(database, listener, book_id)
    assert kept is not None
    assert kept.position_seconds == 42.0
    assert await stored(database, other, book_id) is None


async def test_saves_over_http_land_for_each_listener_and_book(
    client: Client, settings: Settings, make_book: MakeBook
) -> None:
    """The route's wiring; Litestar's test client hands the app one request at a time, so batches are tested above."""
    books = [await make_book(title=f"Shelf {n}", duration=2000) for n in range(3)]
    listeners = [await account(client, settings, verified=True) for _ in range(4)]

    async def put(tokens: Tokens, book_id: int, position: float) -> Any:
        response = await client.put(
            f"/api/progress/{book_id}/", headers=bearer(tokens), json={"position_seconds": position}
        )
        assert response.status_code == 200, response.text
        return response.json()

    wanted = {
        (index, book_id): float(100 * index + 7 * number)
        for index in range(len(listeners))
        for number, book_id in enumerate(books)
    }
    await asyncio.gather(*(put(listeners[index], book_id, position) for (index, book_id), position in wanted.items()))
    for (index, book_id), position in wanted.items():
        read = await client.get(f"/api/progress/{book_id}/", headers=bearer(listeners[index]))
        assert read.json()["position_seconds"] == position


async def test_a_token_that_outlived_its_account_saves_nothing(
    client: Client, settings: Settings, database: SQLAlchemyAsyncConfig, make_book: MakeBook
) -> None:
    book_id = await make_book(title="Signed out", duration=1000)
    listener = await account(client, settings, verified=True)
    async with database.get_session() as session:
        await session.execute(
            update(User).where(User.id == listener["user_id"]).values(credentials_changed_at=an_hour_from_now())
        )
        await session.commit()
    response = await client.put(f"/api/progress/{book_id}/", headers=bearer(listener), json={"position_seconds": 5})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await stored(database, listener, book_id) is None


def test_a_batch_takes_one_save_per_place_and_at_most_its_size() -> None:
    pending = [SimpleNamespace(key=key) for key in [(1, 1), (1, 2), (1, 1), (2, 1), (3, 1)]]
    batch, waiting = next_batch(pending, 3)  # type: ignore[arg-type]
    assert [save.key for save in batch] == [(1, 1), (1, 2), (2, 1)]
    assert [save.key for save in waiting] == [(1, 1), (3, 1)]


async def test_two_processes_saving_the_same_places_at_once_neither_fails(
    client: Client, settings: Settings, database: SQLAlchemyAsyncConfig, make_book: MakeBook
) -> None:
    """Two processes' writers (two ``ProgressSaves``) batch overlapping places in opposite orders."""
    books = [await make_book(title=f"Shared {n}", duration=5000) for n in range(4)]
    listeners = [await account(client, settings, verified=True) for _ in range(4)]
    first, second = ProgressSaves(database), ProgressSaves(database)
    places = [(listener, book_id) for listener in listeners for book_id in books]
    sent = datetime.now(UTC)

    def saves(writer: ProgressSaves, order: list[tuple[Tokens, int]], device: str, offset: int) -> list[Any]:
        return [
            writer.save(
                holder(listener),
                book_id,
                ProgressWrite(
                    position_seconds=float(100 + offset),
                    device_id=device,
                    client_updated_at=sent + timedelta(milliseconds=offset),
                ),
            )
            for listener, book_id in order
        ]

    answers = await asyncio.gather(
        *saves(first, places, "phone", 1), *saves(second, places[::-1], "tablet", 2), return_exceptions=True
    )
    assert all(isinstance(answer, ProgressRead | Conflict) for answer in answers), answers
    for listener, book_id in places:
        kept = await stored(database, listener, book_id)
        assert kept is not None
        assert kept.position_seconds in {101.0, 102.0}

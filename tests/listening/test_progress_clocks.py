"""Progress across devices whatever their clocks say: none can lock out, rewind or reset the others."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from httpx import Response
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audioverse.listening import services
from tests.accounts.test_auth_flow import bearer
from tests.catalog.fixtures import MakeBook, Tokens

Client = AsyncTestClient[Litestar]
SIX_MONTHS = timedelta(days=182)
THREE_HOURS = timedelta(hours=3)


def now() -> datetime:
    return datetime.now(UTC)


async def put(
    client: Client,
    tokens: Tokens,
    book_id: int,
    position: float,
    device: str,
    updated_at: datetime | None = None,
    sent_at: datetime | None = None,
) -> Response:
    body: dict[str, Any] = {"position_seconds": position, "device_id": device}
    if updated_at is not None:
        body["client_updated_at"] = updated_at.isoformat()
    if sent_at is not None:
        body["client_sent_at"] = sent_at.isoformat()
    return await client.put(f"/api/progress/{book_id}/", headers=bearer(tokens), json=body)


async def stored_position(client: Client, tokens: Tokens, book_id: int) -> float:
    position: float = (await client.get(f"/api/progress/{book_id}/", headers=bearer(tokens))).json()["position_seconds"]
    return position


def refused_with(response: Response, position: float) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["progress"]["position_seconds"] == position


async def test_a_clock_months_ahead_locks_nobody_out(client: Client, make_book: MakeBook, uploader: Tokens) -> None:
    book_id = await make_book(title="Fast clock", duration=10_000)
    started = now()
    for position in (100, 140, 180):
        ahead = await put(client, uploader, book_id, position, "fast", now() + SIX_MONTHS)
        assert ahead.status_code == 200, ahead.text
        honest = await put(client, uploader, book_id, position + 10, "phone", now())
        assert honest.status_code == 200, honest.text
    assert await stored_position(client, uploader, book_id) == 190
    # Its clock does not buy listening time either: the ledger never counts more than real time passed.
    stats = (await client.get("/api/users/me/stats/", headers=bearer(uploader))).json()
    assert stats["total_listening_seconds"] <= (now() - started).total_seconds()


async def test_a_slow_clock_records_when_its_update_is_the_newest(
    client: Client, make_book: MakeBook, uploader: Tokens
) -> None:
    book_id = await make_book(title="Slow clock", duration=10_000)
    assert (await put(client, uploader, book_id, 1000, "tablet", now())).status_code == 200
    behind = now() - THREE_HOURS
    slow = await put(client, uploader, book_id, 1020, "slow-phone", behind, sent_at=behind)
    assert slow.status_code == 200, slow.text
    assert await stored_position(client, uploader, book_id) == 1020
    assert (await put(client, uploader, book_id, 1040, "tablet", now())).status_code == 200
    behind = now() - THREE_HOURS
    assert (await put(client, uploader, book_id, 1060, "slow-phone", behind, sent_at=behind)).status_code == 200
    assert await stored_position(client, uploader, book_id) == 1060
    # A sending time without a stamp of the same clock beside it is no reason to date the update back.
    sent_only = await client.put(
        f"/api/progress/{book_id}/",
        headers=bearer(uploader),
        json={"position_seconds": 1080, "device_id": "fast", "client_sent_at": (now() + SIX_MONTHS).isoformat()},
    )
    assert sent_only.status_code == 200, sent_only.text


async def test_an_offline_device_syncing_later_does_not_rewind(
    client: Client, make_book: MakeBook, uploader: Tokens
) -> None:
    book_id = await make_book(title="Offline", duration=10_000)
    assert (await put(client, uploader, book_id, 5000, "tablet", now())).status_code == 200
    queued = [(600.0, now() - THREE_HOURS), (900.0, now() - THREE_HOURS + timedelta(minutes=5))]
    for position, when in queued:
        refused_with(await put(client, uploader, book_id, position, "phone", when, sent_at=now()), 5000)
        refused_with(await put(client, uploader, book_id, position, "phone", when), 5000)
    assert await stored_position(client, uploader, book_id) == 5000


async def test_an_update_queued_since_the_calendars_start_is_the_oldest_not_an_error(
    client: Client, make_book: MakeBook, uploader: Tokens
) -> None:
    book_id = await make_book(title="Ancient queue", duration=10_000)
    year_one, year_9999 = datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    # With nothing stored it is taken (the oldest update there can be); after a real one it loses.
    assert (await put(client, uploader, book_id, 100, "phone", year_one, sent_at=year_9999)).status_code == 200
    assert (await put(client, uploader, book_id, 5000, "tablet", now())).status_code == 200
    refused_with(await put(client, uploader, book_id, 700, "phone", year_one, sent_at=year_9999), 5000)


async def test_two_devices_alternating_each_win_in_turn(client: Client, make_book: MakeBook, uploader: Tokens) -> None:
    book_id = await make_book(title="Alternating", duration=10_000)
    for turn in range(6):
        device = ("phone", "laptop")[turn % 2]
        position = 100.0 + turn * 15
        saved = await put(client, uploader, book_id, position, device, now())
        assert saved.status_code == 200, (turn, saved.text)
        assert await stored_position(client, uploader, book_id) == position


async def test_a_device_restarting_at_zero_right_after_another_does_not_win(
    client: Client, make_book: MakeBook, uploader: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    book_id = await make_book(title="Handover", duration=10_000)
    assert (await put(client, uploader, book_id, 3000, "tablet", now())).status_code == 200
    reset = await put(client, uploader, book_id, 0, "phone", now())
    refused_with(reset, 3000)
    assert "another device" in reset.json()["detail"].lower()
    refused_with(await put(client, uploader, book_id, 0, "phone"), 3000)  # no client stamp at all
    # Picking up a few seconds before the other device's place is a handover, not a reset.
    assert (await put(client, uploader, book_id, 2990, "phone", now())).status_code == 200
    # The device that holds the place may go back as far as it likes.
    assert (await put(client, uploader, book_id, 0, "phone", now())).status_code == 200
    assert (await put(client, uploader, book_id, 4000, "tablet", now())).status_code == 200
    # Once the other device's update is no longer fresh, a deliberate restart wins.
    monkeypatch.setattr(services, "HANDOVER_WINDOW", timedelta(milliseconds=300))
    await anyio.sleep(0.4)
    assert (await put(client, uploader, book_id, 0, "phone", now())).status_code == 200
    assert await stored_position(client, uploader, book_id) == 0


async def test_a_devices_own_updates_arriving_out_of_order_are_stale(
    client: Client, make_book: MakeBook, uploader: Tokens
) -> None:
    book_id = await make_book(title="Reordered", duration=10_000)
    first, second = now(), now() + timedelta(milliseconds=500)
    assert (await put(client, uploader, book_id, 210, "phone", second)).status_code == 200
    refused_with(await put(client, uploader, book_id, 200, "phone", first), 210)
    # Sent together after a stretch offline: each dated by its age, and the older still loses.
    book_id = await make_book(title="Reordered offline", duration=10_000)
    sent = now()
    assert (await put(client, uploader, book_id, 260, "phone", sent - timedelta(seconds=10), sent)).status_code == 200
    refused_with(await put(client, uploader, book_id, 250, "phone", sent - timedelta(seconds=20), sent), 260)
    # A clock months ahead keeps its own order too, although the server dates both at their receipt.
    book_id = await make_book(title="Reordered ahead", duration=10_000)
    ahead = now() + SIX_MONTHS
    assert (await put(client, uploader, book_id, 310, "fast", ahead + timedelta(seconds=1))).status_code == 200
    refused_with(await put(client, uploader, book_id, 300, "fast", ahead), 310)


async def test_a_clock_set_right_freezes_its_device_for_minutes_at_most(
    client: Client, make_book: MakeBook, uploader: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    book_id = await make_book(title="Clock fixed", duration=10_000)
    assert (await put(client, uploader, book_id, 100, "phone", now() + SIX_MONTHS)).status_code == 200
    # Right after, the device cannot tell its correction from a delayed older update of its own ...
    refused_with(await put(client, uploader, book_id, 120, "phone", now()), 100)
    # ... but once its last stored update is past the reorder window, its corrected clock is believed.
    monkeypatch.setattr(services, "REORDER_WINDOW", timedelta(milliseconds=300))
    await anyio.sleep(0.4)
    assert (await put(client, uploader, book_id, 130, "phone", now())).status_code == 200
    assert await stored_position(client, uploader, book_id) == 130


async def test_an_unstamped_update_is_ordered_by_its_arrival_not_by_an_earlier_stamp(
    client: Client, make_book: MakeBook, uploader: Tokens
) -> None:
    book_id = await make_book(title="Stamp then none", duration=10_000)
    body: dict[str, Any] = {"position_seconds": 100, "client_updated_at": (now() + SIX_MONTHS).isoformat()}
    url, headers = f"/api/progress/{book_id}/", bearer(uploader)
    assert (await client.put(url, headers=headers, json=body)).status_code == 200
    # The same client (no device id) then sends no stamp: the server dates it, later than the first.
    later = await client.put(url, headers=headers, json={"position_seconds": 120})
    assert later.status_code == 200, later.text
    assert await stored_position(client, uploader, book_id) == 120

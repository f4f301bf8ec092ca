"""Progress across devices, listening time, stats, bookmarks, library and listening lists, playback."""

from __future__ import annotations

import base64
import hashlib
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audioverse.app import create_app
from audioverse.config import Settings
from audioverse.signing import verify_stream_token
from audioverse.stats.services import streaks
from tests.accounts.test_auth_flow import bearer
from tests.catalog.fixtures import MakeBook, Tokens
from tests.catalog.test_catalog_api import counted_statements

Client = AsyncTestClient[Litestar]
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


async def save(client: Client, tokens: Tokens, book_id: int, position: float, when: float, **extra: Any) -> Any:
    return await client.post(
        f"/api/progress/{book_id}/",
        headers=bearer(tokens),
        json={"position_seconds": position, "client_updated_at": at(when), **extra},
    )


async def test_progress_round_trip_and_chapter(client: Client, make_book: MakeBook, uploader: Tokens) -> None:
    book_id = await make_book(title="Progress", duration=1000, chapters=4)
    assert (await client.get(f"/api/progress/{book_id}/", headers=bearer(uploader))).status_code == 404
    saved = await save(client, uploader, book_id, 260.5, 0, playback_speed=1.25, device_id="phone")
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["position_seconds"] == 260.5
    assert body["current_chapter"] == 2  # chapters start at 0, 250, 500, 750
    assert body["playback_speed"] == 1.25
    assert body["is_completed"] is False
    assert (await client.get(f"/api/progress/{book_id}/", headers=bearer(uploader))).json() == body
    # Speed stays what the listener chose until they change it.
    assert (await save(client, uploader, book_id, 300, 60)).json()["playback_speed"] == 1.25


async def test_speed_defaults_to_the_users_preference(client: Client, make_book: MakeBook, uploader: Tokens) -> None:
    await client.patch("/api/users/me/", headers=bearer(uploader), json={"default_playback_speed": 1.75})
    book_id = await make_book(title="Fast")
    assert (await save(client, uploader, book_id, 10, 0)).json()["playback_speed"] == 1.75


async def test_stale_updates_are_409_with_the_stored_state(
    client: Client, make_book: MakeBook, uploader: Tokens
) -> None:
    book_id = await make_book(title="Two devices", duration=1000)
    await save(client, uploader, book_id, 500, 100, device_id="tablet")
    stale = await save(client, uploader, book_id, 20, 50, device_id="phone")
    assert stale.status_code == 409
    assert stale.json()["progress"]["position_seconds"] == 500
    same_time = await save(client, uploader, book_id, 30, 100)
    assert same_time.status_code == 409


@pytest.mark.parametrize(("position", "status"), [(-1, 422), (1000.001, 422), ("far", 400), (None, 400)])
async def test_positions_outside_the_book_are_refused(
    client: Client, make_book: MakeBook, uploader: Tokens, position: Any, status: int
) -> None:
    book_id = await make_book(title="Bounded", duration=1000)
    response = await client.post(
        f"/api/progress/{book_id}/", headers=bearer(uploader), json={"position_seconds": position}
    )
    assert response.status_code in {status, 400, 422}
    assert (await client.get(f"/api/progress/{book_id}/", headers=bearer(uploader))).status_code == 404
    missing = await client.post("/api/progress/987654321/", headers=bearer(uploader), json={"position_seconds": 1})
    assert missing.status_code == 404


async def test_completion_rule(client: Client, make_book: MakeBook, uploader: Tokens) -> None:
    book_id = await make_book(title="Finishing", duration=1000)
    assert (await save(client, uploader, book_id, 969, 0)).json()["is_completed"] is False
    assert (await save(client, uploader, book_id, 971, 10)).json()["is_completed"] is True
    other = await make_book(title="Explicit", duration=1000)
    assert (await save(client, uploader, other, 100, 0, is_completed=True)).json()["is_completed"] is True
    completed = (await client.get("/api/listening/completed/", headers=bearer(uploader))).json()
    assert {item["audiobook"]["id"] for item in completed["items"]} >= {book_id, other}


async def test_racing_devices_end_with_the_newest_update(client: Client, make_book: MakeBook, uploader: Tokens) -> None:
    book_id = await make_book(title="Race", duration=10_000)
    updates = [(float(n * 7 % 9000), float(n)) for n in range(200)]
    random.Random(3).shuffle(updates)
    statuses: list[int] = []

    async def device(batch: list[tuple[float, float]], name: str) -> None:
        for position, when in batch:
            statuses.append((await save(client, uploader, book_id, position, when, device_id=name)).status_code)

    async with anyio.create_task_group() as group:
        for index in range(4):
            group.start_soon(device, updates[index::4], f"device-{index}")
    assert set(statuses) <= {200, 409}
    newest_position = max(updates, key=lambda update: update[1])[0]
    final = (await client.get(f"/api/progress/{book_id}/", headers=bearer(uploader))).json()
    assert final["position_seconds"] == newest_position


async def test_seeking_forward_adds_no_listening_time(client: Client, make_book: MakeBook, uploader: Tokens) -> None:
    book_id = await make_book(title="Seekable", duration=36000, genres=("Sea Stories",), authors=("Herman Melville",))
    await save(client, uploader, book_id, 0, 0, playback_speed=1.0)
    await save(client, uploader, book_id, 60, 60)  # one minute of listening
    await save(client, uploader, book_id, 5000, 65)  # a seek: 4,940 s of position in 5 s of time
    await save(client, uploader, book_id, 5120, 125, playback_speed=2.0)  # a minute at double speed
    stats = (await client.get("/api/users/me/stats/", headers=bearer(uploader))).json()
    assert stats["total_listening_seconds"] == pytest.approx(60 + 5 + 120)
    assert stats["audiobooks_started"] == 1
    assert stats["top_genres"][0]["name"] == "Sea Stories"
    assert stats["top_authors"][0]["name"] == "Herman Melville"
    assert len(stats["listening_by_day"]) == 30
    today = stats["listening_by_day"][-1]
    assert today["seconds"] == pytest.approx(185)
    assert stats["current_streak_days"] == 1
    # Seeking backwards is not listening either.
    await save(client, uploader, book_id, 10, 200)
    again = (await client.get("/api/users/me/stats/", headers=bearer(uploader))).json()
    assert again["total_listening_seconds"] == pytest.approx(185)


def test_streaks() -> None:
    day = datetime(2026, 11, 24, tzinfo=UTC).date()
    assert streaks([], day) == (0, 0)
    run = [day - timedelta(days=n) for n in range(3)]
    assert streaks(run, day) == (3, 3)
    assert streaks([d - timedelta(days=1) for d in run], day) == (3, 3)  # ends yesterday: still current
    assert streaks([day - timedelta(days=5), day - timedelta(days=6), day - timedelta(days=7), day], day) == (1, 3)
    assert streaks([day - timedelta(days=2)], day) == (0, 1)


async def test_bookmarks(client: Client, make_book: MakeBook, uploader: Tokens, other_listener: Tokens) -> None:
    book_id = await make_book(title="Marked", duration=600)
    url = f"/api/audiobooks/{book_id}/bookmarks/"
    later = await client.post(
        url, headers=bearer(uploader), json={"position_seconds": 300, "title": "Storm", "note": "Chills."}
    )
    earlier = await client.post(url, headers=bearer(uploader), json={"position_seconds": 12.5})
    assert later.status_code == earlier.status_code == 201
    listed = (await client.get(url, headers=bearer(uploader))).json()
    assert [b["position_seconds"] for b in listed] == [12.5, 300]
    assert (await client.get(url, headers=bearer(other_listener))).json() == []
    for bad in ({"position_seconds": 601}, {"position_seconds": -1}, {"position_seconds": 1, "note": "x" * 2001}):
        assert (await client.post(url, headers=bearer(uploader), json=bad)).status_code in {400, 422}, bad
    own = f"/api/bookmarks/{later.json()['id']}/"
    assert (await client.patch(own, headers=bearer(other_listener), json={"title": "Mine now"})).status_code == 404
    assert (await client.delete(own, headers=bearer(other_listener))).status_code == 404
    changed = await client.patch(own, headers=bearer(uploader), json={"title": "The storm", "position_seconds": 310})
    assert changed.json()["title"] == "The storm"
    assert changed.json()["note"] == "Chills."
    assert (await client.put(own, headers=bearer(uploader), json={"position_seconds": 700})).status_code == 422
    assert (await client.delete(own, headers=bearer(uploader))).status_code == 204
    assert len((await client.get(url, headers=bearer(uploader))).json()) == 1
    assert (await client.get(url)).status_code == 401
    stats = (await client.get("/api/users/me/stats/", headers=bearer(uploader))).json()
    assert stats["bookmarks_count"] == 1


async def test_library(client: Client, make_book: MakeBook, uploader: Tokens) -> None:
    first = await make_book(title="Shelved one")
    second = await make_book(title="Shelved two")
    added = await client.post(f"/api/library/{first}/", headers=bearer(uploader), json={"shelf": "to-read"})
    assert added.status_code == 201
    assert (await client.post(f"/api/library/{first}/", headers=bearer(uploader))).status_code == 200
    await client.post(f"/api/library/{second}/", headers=bearer(uploader))
    await save(client, uploader, second, 42, 0)
    library = (await client.get("/api/library/", headers=bearer(uploader))).json()
    assert [item["audiobook"]["id"] for item in library["items"]] == [second, first]
    assert library["items"][0]["progress"]["position_seconds"] == 42
    assert library["items"][1]["progress"] is None
    assert library["items"][1]["shelf"] == "to-read"
    shelf = (await client.get("/api/library/", headers=bearer(uploader), params={"shelf": "to-read"})).json()
    assert [item["audiobook"]["id"] for item in shelf["items"]] == [first]
    favorite = await client.post(f"/api/library/{first}/favorite/", headers=bearer(uploader))
    assert favorite.json()["is_favorite"] is True
    favorites = (await client.get("/api/library/favorites/", headers=bearer(uploader))).json()
    assert [item["audiobook"]["id"] for item in favorites["items"]] == [first]
    filtered = (await client.get("/api/library/", headers=bearer(uploader), params={"favorite": "true"})).json()
    assert filtered["total"] == 1
    assert (await client.delete(f"/api/library/{first}/favorite/", headers=bearer(uploader))).json()[
        "is_favorite"
    ] is False
    assert (await client.delete(f"/api/library/{first}/", headers=bearer(uploader))).status_code == 204
    assert (await client.delete(f"/api/library/{first}/", headers=bearer(uploader))).status_code == 204
    assert (await client.get("/api/library/", headers=bearer(uploader))).json()["total"] == 1
    assert (await client.post("/api/library/987654321/", headers=bearer(uploader))).status_code == 404
    assert (await client.post(f"/api/library/{first}/", headers=bearer(uploader), json={"shelf": ""})).status_code in {
        400,
        422,
    }


async def test_listening_lists(client: Client, make_book: MakeBook, uploader: Tokens) -> None:
    started = await make_book(title="Started", duration=1000)
    finished = await make_book(title="Finished", duration=1000)
    await save(client, uploader, started, 100, 0)
    await save(client, uploader, finished, 1000, 0)
    current = (await client.get("/api/listening/current/", headers=bearer(uploader))).json()
    assert [item["audiobook"]["id"] for item in current["items"]] == [started]
    assert (await client.get("/api/library/currently-listening/", headers=bearer(uploader))).json() == current
    history = (await client.get("/api/listening/history/", headers=bearer(uploader))).json()
    assert [item["audiobook"]["id"] for item in history["items"]] == [finished, started]
    assert (await client.get("/api/library/history/", headers=bearer(uploader))).json() == history
    assert (await client.get("/api/listening/history/")).status_code == 401


async def test_list_pages_echo_their_window_and_count_past_the_end(
    client: Client, make_book: MakeBook, uploader: Tokens
) -> None:
    for index in range(3):
        book_id = await make_book(title=f"Paged {index}")
        await client.post(f"/api/library/{book_id}/", headers=bearer(uploader))
        await client.post(f"/api/library/{book_id}/favorite/", headers=bearer(uploader))
        await save(client, uploader, book_id, 5, index)
    for url in ("/api/library/", "/api/library/favorites/", "/api/listening/history/", "/api/listening/current/"):
        whole = (await client.get(url, headers=bearer(uploader))).json()
        second = (await client.get(url, headers=bearer(uploader), params={"limit": 1, "offset": 1})).json()
        assert second["items"] == whole["items"][1:2], url
        assert (second["total"], second["limit"], second["offset"]) == (whole["total"], 1, 1), url
        beyond = (await client.get(url, headers=bearer(uploader), params={"limit": 5, "offset": 50})).json()
        assert beyond == {"items": [], "total": whole["total"], "limit": 5, "offset": 50}, url


async def test_list_pages_cost_constant_statements(
    client: Client, app: Litestar, make_book: MakeBook, uploader: Tokens
) -> None:
    async def add(count: int) -> None:
        for index in range(count):
            book_id = await make_book(title=f"Bulk {index}", authors=(f"Bulk author {index}",))
            await client.post(f"/api/library/{book_id}/", headers=bearer(uploader))
            await save(client, uploader, book_id, 5, index)

    await add(2)
    with counted_statements(app) as few:
        await client.get("/api/library/", headers=bearer(uploader), params={"limit": 100})
        await client.get("/api/listening/history/", headers=bearer(uploader), params={"limit": 100})
    await add(8)
    with counted_statements(app) as many:
        await client.get("/api/library/", headers=bearer(uploader), params={"limit": 100})
        await client.get("/api/listening/history/", headers=bearer(uploader), params={"limit": 100})
    assert len(many) == len(few)


async def test_playback_start(client: Client, make_book: MakeBook, uploader: Tokens, app: Litestar) -> None:
    book_id = await make_book(title="Playable", duration=1234.5, chapters=3)
    first = await client.get(f"/api/audiobooks/{book_id}/playback/", headers=bearer(uploader))
    assert first.status_code == 200
    body = first.json()
    assert body["duration_seconds"] == 1234.5
    assert body["mime_type"] == "audio/mpeg"
    assert len(body["chapters"]) == 3
    assert body["progress"] is None
    assert body["playback_speed"] == 1.0
    token = body["stream_url"].split("token=")[1]
    me = (await client.get("/api/users/me/", headers=bearer(uploader))).json()
    assert verify_stream_token(app.state.secret_key, token, book_id) == me["id"]
    assert datetime.fromisoformat(body["stream_url_expires_at"]) > datetime.now(UTC) + timedelta(minutes=30)
    await client.get(f"/api/audiobooks/{book_id}/playback/", headers=bearer(uploader))
    assert (await client.get(f"/api/audiobooks/{book_id}/")).json()["play_count"] == 1  # once per 30 minutes
    await save(client, uploader, book_id, 50, 0, playback_speed=1.5)
    resumed = (await client.get(f"/api/audiobooks/{book_id}/playback/", headers=bearer(uploader))).json()
    assert resumed["progress"]["position_seconds"] == 50
    assert resumed["playback_speed"] == 1.5
    assert (await client.get("/api/audiobooks/987654321/playback/", headers=bearer(uploader))).status_code == 404
    assert (await client.get(f"/api/audiobooks/{book_id}/playback/")).status_code == 401


async def test_behind_nginx_playback_hands_out_a_link_nginx_checks_itself(
    settings: Settings, make_book: MakeBook, uploader: Tokens
) -> None:
    secret = "shared with nginx's secure_link_md5"
    book_id = await make_book(title="Linked")
    app = create_app(msgspec.structs.replace(settings, stream_secure_link_secret=secret))
    async with AsyncTestClient(app) as client:
        body = (await client.get(f"/api/audiobooks/{book_id}/playback/", headers=bearer(uploader))).json()
    link = urlsplit(body["stream_url"])
    query = parse_qs(link.query)
    expires = int(query["expires"][0])
    assert expires == int(datetime.fromisoformat(body["stream_url_expires_at"]).timestamp())
    # nginx: secure_link_md5 "$secure_link_expires$uri <secret>", base64url without padding.
    digest = hashlib.md5(f"{expires}{unquote(link.path)} {secret}".encode(), usedforsecurity=False).digest()
    assert query["md5"] == [base64.urlsafe_b64encode(digest).decode().rstrip("=")]
    assert link.path.startswith("/media/")
    assert "token" not in query

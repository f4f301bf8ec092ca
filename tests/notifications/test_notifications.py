"""Follows and preferences over the API; alerts, summaries and digests through the real worker, each mailed once."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import insert, select

from audioverse.accounts.models import User
from audioverse.catalog.models import Audiobook, Author
from audioverse.config import Settings
from audioverse.notifications.schemas import DAYS
from tests.accounts.test_auth_flow import bearer
from tests.catalog.fixtures import MakeBook, Tokens, account
from tests.services import Mailbox, database_for, email_text

Client = AsyncTestClient[Litestar]
FOLLOWS = "/api/users/me/follows/"
PREFERENCES = "/api/users/me/notifications/"
JOBS = "/api/admin/jobs/"
RELEASES = "notifications.send_release_alerts"
SUMMARIES = "notifications.send_summaries_and_digests"
JOB_WAIT_SECONDS = 30


async def email_of(settings: Settings, tokens: Tokens) -> str:
    async with database_for(settings) as database, database.get_session() as session:
        address = await session.scalar(select(User.email).where(User.id == tokens["user_id"]))
    assert address is not None
    return address


async def author_id(settings: Settings, name: str) -> int:
    async with database_for(settings) as database, database.get_session() as session:
        found = await session.scalar(select(Author.id).where(Author.name == name))
    assert found is not None
    return found


async def run_job_now(client: Client, curator: Tokens, name: str) -> None:
    """Run a scheduled job through the worker and wait until its run is recorded."""

    async def last_run() -> Any:
        jobs = (await client.get(JOBS, headers=bearer(curator))).json()
        return next(job for job in jobs if job["name"] == name)

    before = (await last_run())["last_run_at"]
    started = await client.post(f"{JOBS}{name}/run/", headers=bearer(curator))
    assert started.status_code == 202, started.text
    with anyio.fail_after(JOB_WAIT_SECONDS):
        while (job := await last_run())["last_run_at"] == before:  # noqa: ASYNC110 - polling the worker
            await anyio.sleep(0.1)
    assert job["last_outcome"] == "succeeded", job


async def settle(mailbox: Mailbox) -> int:
    """Wait until no new mail has arrived for half a second (each delivery is a job of its own); returns the count."""
    count = -1
    while count != len(mailbox.messages()):
        count = len(mailbox.messages())
        await anyio.sleep(0.5)
    return count


async def test_follows_are_replaced_read_back_and_cleared(
    client: Client, make_book: MakeBook, settings: Settings, uploader: Tokens, tag: str
) -> None:
    book = await make_book(title=f"Kept {tag}", authors=(f"Kept Author {tag}",), narrators=(f"Voice {tag}",))
    await make_book(title=f"Other {tag}", authors=(f"Followed Author {tag}",), genres=(f"Genre {tag}",))
    followed = await author_id(settings, f"Followed Author {tag}")
    genre = (await client.get("/api/genres/")).json()
    slug = next(g["slug"] for g in genre if g["name"] == f"Genre {tag}")
    assert (await client.post(f"/api/library/{book}/", headers=bearer(uploader))).status_code == 201

    wanted = {"authors": [followed], "series": ["The  Expanse "], "genres": [slug]}
    response = await client.put(FOLLOWS, headers=bearer(uploader), json=wanted)
    assert response.status_code == 200, response.text
    follows = response.json()
    assert [a["name"] for a in follows["authors"]] == [f"Followed Author {tag}"]
    assert follows["series"] == ["the expanse"]
    assert [g["slug"] for g in follows["genres"]] == [slug]
    assert follows["narrators"] == []
    # The book in the library makes its author and narrator followed too.
    assert [a["name"] for a in follows["implicit"]["authors"]] == [f"Kept Author {tag}"]
    assert [n["name"] for n in follows["implicit"]["narrators"]] == [f"Voice {tag}"]
    assert (await client.get(FOLLOWS, headers=bearer(uploader))).json() == follows

    for bad in (
        {"authors": [followed, 999_999_999]},
        {"genres": ["no-such-genre"]},
        {"series": [""]},
        {"colour": []},
        {"authors": [10**30]},
    ):
        refused = await client.put(FOLLOWS, headers=bearer(uploader), json=bad)
        assert refused.status_code == 422, bad
    assert (
        await client.put(FOLLOWS, headers=bearer(uploader), json={"authors": list(range(1, 502))})
    ).status_code == 422
    assert (await client.get(FOLLOWS, headers=bearer(uploader))).json() == follows  # nothing changed

    assert (await client.delete(FOLLOWS, headers=bearer(uploader))).status_code == 204
    cleared = (await client.get(FOLLOWS, headers=bearer(uploader))).json()
    assert (cleared["authors"], cleared["series"], cleared["genres"]) == ([], [], [])
    assert cleared["implicit"] == follows["implicit"]
    assert (await client.get(FOLLOWS)).status_code == 401


async def test_preferences_start_at_the_defaults_and_change_field_by_field(client: Client, uploader: Tokens) -> None:
    defaults = {
        "new_releases": "daily",
        "weekly_digest": True,
        "digest_day": "monday",
        "digest_hour": 8,
        "time_zone": "UTC",
    }
    assert (await client.get(PREFERENCES, headers=bearer(uploader))).json() == defaults
    changed = await client.put(
        PREFERENCES, headers=bearer(uploader), json={"time_zone": "Asia/Kolkata", "digest_hour": 21}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json() == defaults | {"time_zone": "Asia/Kolkata", "digest_hour": 21}
    for bad in (
        {"time_zone": "Mars/Olympus"},
        {"time_zone": "../../etc/passwd"},
        {"digest_hour": 24},
        {"digest_day": "someday"},
        {"new_releases": "hourly"},
        {"weekly_digest": "yes"},
    ):
        refused = await client.put(PREFERENCES, headers=bearer(uploader), json=bad)
        assert refused.status_code == 422, bad
    assert (await client.get(PREFERENCES, headers=bearer(uploader))).json()["time_zone"] == "Asia/Kolkata"
    assert (await client.get(PREFERENCES)).status_code == 401


async def test_an_instant_alert_for_a_followed_author_is_mailed_once_and_unsubscribes_in_one_click(
    client: Client, make_book: MakeBook, settings: Settings, mailbox: Mailbox, curator: Tokens, tag: str
) -> None:
    fan = await account(client, settings, verified=True)
    unverified = await account(client, settings, verified=False)
    on_daily = await account(client, settings, verified=True)
    await make_book(title=f"Earlier {tag}", authors=(f"Writer {tag}",))
    writer = await author_id(settings, f"Writer {tag}")
    for tokens in (fan, unverified, on_daily):
        assert (await client.put(FOLLOWS, headers=bearer(tokens), json={"authors": [writer]})).status_code == 200
    for tokens in (fan, unverified):
        await client.put(PREFERENCES, headers=bearer(tokens), json={"new_releases": "instant"})

    await make_book(title=f"Brand New {tag}", authors=(f"Writer {tag}",))
    await run_job_now(client, curator, RELEASES)
    address = await email_of(settings, fan)
    alerts = [m for m in [await mailbox.wait_for(address, f"Brand New {tag}")]]
    await run_job_now(client, curator, RELEASES)  # a second run decides nothing new
    await settle(mailbox)
    assert len([m for m in mailbox.to(address) if f"Brand New {tag}" in m["Subject"]]) == 1
    # Both books are recent, so the earlier one was alerted as well; each exactly once.
    assert len([m for m in mailbox.to(address) if f"Earlier {tag}" in m["Subject"]]) == 1
    for other in (unverified, on_daily):  # not verified; daily alerts come with the daily summary
        assert [m for m in mailbox.to(await email_of(settings, other)) if tag in m["Subject"]] == []

    alert = alerts[0]
    assert f"Brand New {tag}" in email_text(alert)
    assert alert["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = alert["List-Unsubscribe"].strip("<>")
    token = parse_qs(urlsplit(link).query)["token"][0]
    page = await client.get("/api/notifications/unsubscribe/", params={"token": token})
    assert page.status_code == 200
    assert "<form" in page.text
    # Opening the link changes nothing (mail scanners open links).
    assert (await client.get(PREFERENCES, headers=bearer(fan))).json()["new_releases"] == "instant"
    # What a mail client sends for RFC 8058: a form body, no credentials.
    unsubscribed = await client.post(
        "/api/notifications/unsubscribe/",
        params={"token": token},
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert unsubscribed.status_code == 200, unsubscribed.text
    assert unsubscribed.json() == {"mailing": "releases"}
    assert (await client.get(PREFERENCES, headers=bearer(fan))).json()["new_releases"] == "off"
    for forged in (token[:-2] + "xx", "not-a-token", ""):
        refused = await client.post("/api/notifications/unsubscribe/", params={"token": forged})
        assert refused.status_code == 422, forged


def local_now(zone: str) -> datetime:
    return datetime.now(UTC).astimezone(zoneinfo.ZoneInfo(zone))


async def test_the_digest_and_the_daily_summary_come_at_the_listeners_own_hour_once(
    client: Client, make_book: MakeBook, settings: Settings, mailbox: Mailbox, curator: Tokens, tag: str
) -> None:
    zone = "Asia/Kolkata"  # a half-hour offset: the quarter-hour schedule still finds its hour
    now = local_now(zone)
    due = await account(client, settings, verified=True)
    not_yet = await account(client, settings, verified=True)
    book = await make_book(title=f"Saga One {tag}", authors=(f"Saga Writer {tag}",))
    await client.post(f"/api/library/{book}/", headers=bearer(due))
    await client.put(FOLLOWS, headers=bearer(due), json={"series": [f"Saga {tag}"]})
    await make_book(title=f"Saga Two {tag}", authors=(f"Someone Else {tag}",))
    async with database_for(settings) as database, database.get_session() as session:
        latest = await session.scalar(select(Audiobook).where(Audiobook.title == f"Saga Two {tag}"))
        assert latest is not None
        latest.series = f"Saga {tag}"
        await session.commit()
    schedule = {"time_zone": zone, "digest_day": DAYS[now.weekday()], "digest_hour": now.hour}
    assert (await client.put(PREFERENCES, headers=bearer(due), json=schedule)).status_code == 200
    later = schedule | {"digest_hour": (now.hour + 3) % 24}
    assert (await client.put(PREFERENCES, headers=bearer(not_yet), json=later)).status_code == 200

    await run_job_now(client, curator, SUMMARIES)
    address = await email_of(settings, due)
    digest = await mailbox.wait_for(address, "Your week in audiobooks")
    summary = await mailbox.wait_for(address, "1 new audiobook from what you follow")
    assert f"Saga Two {tag}" in email_text(summary)
    assert "minutes listened" in email_text(digest)
    assert digest["List-Unsubscribe"]
    await run_job_now(client, curator, SUMMARIES)
    await settle(mailbox)
    mine: list[Message] = [m for m in mailbox.to(address) if "Confirm" not in m["Subject"]]
    assert sorted(m["Subject"] for m in mine) == sorted([digest["Subject"], summary["Subject"]])
    assert [m for m in mailbox.to(await email_of(settings, not_yet)) if "Confirm" not in m["Subject"]] == []


async def test_alerts_and_summaries_run_after_a_bulk_import_larger_than_a_statements_parameters(
    client: Client, settings: Settings, curator: Tokens
) -> None:
    # Both databases refuse more than 32,766 bound parameters; a seed or an import makes every book recent.
    books = [
        {"title": f"Imported {n}", "duration_seconds": 60.0, "language": "en", "format": "mp3",
         "mime_type": "audio/mpeg", "size_bytes": 1, "audio_key": f"imported/{n}.mp3"}
        for n in range(33_000)
    ]  # fmt: skip
    async with database_for(settings) as database, database.get_session() as session:
        await session.execute(insert(Audiobook), books)
        await session.commit()
    await run_job_now(client, curator, RELEASES)
    await run_job_now(client, curator, SUMMARIES)

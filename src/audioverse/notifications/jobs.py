"""Notification tasks: new-release alerts each minute; daily release summaries and weekly digests at listeners' hours.

Every mail is decided by inserting its row in ``notification_sent`` (unique per user, kind and
period) and deferring its delivery in the same transaction: two schedulers, a retried task or a
worker killed mid-batch can repeat a decision, never a mail. Delivery is the email job's, retried
with backoff while SMTP is down. Listeners are read in batches of :data:`BATCH` by id, so memory does
not grow with their number. Unverified addresses get nothing.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlencode

import msgspec
from sqlalchemy import Integer, cast, func, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.models import User
from audioverse.catalog.models import Audiobook, Author, audiobook_author, audiobook_genre
from audioverse.config import Settings
from audioverse.db import upsert_into
from audioverse.jobs import defer
from audioverse.listening.models import ListeningLedger
from audioverse.mail import EMAIL_TASK, render_email
from audioverse.notifications.models import Follow, FollowKind, NotificationPreferences, NotificationSent, ReleaseAlerts
from audioverse.notifications.services import DEFAULT_PREFERENCES, followers_of, owned_books
from audioverse.signing import resolve_secret_key, sign_unsubscribe_token
from audioverse.task_runtime import EVERY_MINUTE, Resources, TaskSpec

RELEASE_TASK = "notifications.send_release_alerts"
SUMMARY_TASK = "notifications.send_summaries_and_digests"
RELEASE_LOOKBACK = timedelta(hours=2)
"""Books this recent are alerted on; the sent-log makes every later look at one a no-op."""
BATCH = 500
DIGEST_ITEMS = 5
SUMMARY_ITEMS = 10
"""A daily summary lists the newest this many books and counts the rest."""


class Pick(Protocol):
    """A recommendation as the digest shows it (the recommendations package provides them)."""

    @property
    def book_id(self) -> int: ...
    @property
    def title(self) -> str: ...
    @property
    def reason(self) -> str: ...


Recommend = Callable[[AsyncSession, Any, int], Awaitable[Sequence[Pick]]]
"""(session, the shared store, user id) → the listener's top recommendations with a reason to show."""


@dataclass
class Listener:
    id: int
    email: str
    username: str
    new_releases: ReleaseAlerts
    weekly_digest: bool
    digest_day: int
    digest_hour: int
    time_zone: str


def _listeners() -> Any:
    """Verified listeners with their preferences, the defaults where they never chose."""
    prefs = NotificationPreferences
    defaults = DEFAULT_PREFERENCES
    return (
        select(
            User.id,
            User.email,
            User.username,
            func.coalesce(prefs.new_releases, defaults["new_releases"].value),
            func.coalesce(prefs.weekly_digest, defaults["weekly_digest"]),
            func.coalesce(prefs.digest_day, defaults["digest_day"]),
            func.coalesce(prefs.digest_hour, defaults["digest_hour"]),
            func.coalesce(prefs.time_zone, defaults["time_zone"]),
        )
        .outerjoin(prefs, prefs.user_id == User.id)
        .where(User.is_verified)
        .order_by(User.id)
    )


def _listener(row: Any) -> Listener:
    return Listener(row[0], row[1], row[2], ReleaseAlerts(row[3]), bool(row[4]), row[5], row[6], row[7])


async def _decide(session: AsyncSession, user_id: int, kind: str, period: str) -> bool:
    """Record that ``kind`` for ``period`` goes to the user; False if it was decided before (by anyone)."""
    now = datetime.now(UTC)
    inserted = await session.execute(
        upsert_into(session, NotificationSent)
        .values(user_id=user_id, kind=kind, period=period, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["user_id", "kind", "period"])
        .returning(NotificationSent.id)
    )
    return inserted.scalar_one_or_none() is not None


def _link(settings: Settings, path: str, **query: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}{path}{'?' + urlencode(query) if query else ''}"


async def _send(
    session: AsyncSession,
    settings: Settings,
    listener: Listener,
    template: str,
    subject: str,
    mailing: str,
    **context: Any,
) -> None:
    """Render and defer one mail with its one-click unsubscribe (RFC 8058) for ``mailing``."""
    token = sign_unsubscribe_token(resolve_secret_key(settings), listener.id, mailing)
    unsubscribe = _link(settings, "/api/notifications/unsubscribe/", token=token)
    email = render_email(
        template,
        to=listener.email,
        subject=subject,
        headers={"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        username=listener.username,
        unsubscribe_link=unsubscribe,
        preferences_link=_link(settings, "/api/users/me/notifications/"),
        **context,
    )
    await defer(session, EMAIL_TASK, msgspec.to_builtins(email))


async def _books(session: AsyncSession, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Title, series, link and authors of each book, for a mail."""
    books: dict[int, dict[str, Any]] = {
        book_id: {"id": book_id, "title": title, "series": series, "authors": []}
        for book_id, title, series in await session.execute(
            select(Audiobook.id, Audiobook.title, Audiobook.series).where(Audiobook.id.in_(ids))
        )
    }
    for book_id, name in await session.execute(
        select(audiobook_author.c.audiobook_id, Author.name)
        .join(Author, Author.id == audiobook_author.c.author_id)
        .where(audiobook_author.c.audiobook_id.in_(ids))
    ):
        books[book_id]["authors"].append(name)
    return books


def _with_links(settings: Settings, books: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [book | {"link": _link(settings, f"/api/audiobooks/{book['id']}/")} for book in books]


ALERT_BATCH = 1000
"""(listener, book) pairs whose listeners and books are read in one statement each."""


async def send_release_alerts(resources: Resources) -> int:
    """Alert listeners with instant alerts of each recent book by something they follow; returns mails decided."""
    since = datetime.now(UTC) - RELEASE_LOOKBACK
    decided = 0
    async with resources.database.get_session() as session:
        # A SELECT, not a list: a bulk import makes every book recent at once (100,000 after a seed).
        recent = select(Audiobook.id).where(Audiobook.created_at >= since)
        pairs = followers_of(recent).subquery("followers")
        rows = await session.execute(
            select(pairs.c.user_id, pairs.c.audiobook_id)
            .join(Audiobook, Audiobook.id == pairs.c.audiobook_id)
            .join(User, User.id == pairs.c.user_id)
            .outerjoin(NotificationPreferences, NotificationPreferences.user_id == User.id)
            .where(
                User.is_verified,
                func.coalesce(NotificationPreferences.new_releases, ReleaseAlerts.DAILY.value)
                == ReleaseAlerts.INSTANT.value,
                func.coalesce(Audiobook.uploaded_by_id, 0) != pairs.c.user_id,
            )
            .order_by(pairs.c.user_id, pairs.c.audiobook_id)
        )
        wanted = list(rows)
        for start in range(0, len(wanted), ALERT_BATCH):
            decided += await _alert(session, resources.settings, wanted[start : start + ALERT_BATCH])
        await session.commit()
    return decided


async def _alert(session: AsyncSession, settings: Settings, pairs: Sequence[Any]) -> int:
    """Decide and defer the alert of each (listener, book) pair; returns how many were new."""
    decided = 0
    users = {
        row[0]: _listener(row) for row in await session.execute(_listeners().where(User.id.in_({u for u, _ in pairs})))
    }
    books = await _books(session, sorted({book for _, book in pairs}))
    for user_id, book_id in pairs:
        if await _decide(session, user_id, "release", str(book_id)):
            book = _with_links(settings, [books[book_id]])[0]
            await _send(
                session, settings, users[user_id], "release_alert", f"New: {book['title']}", "releases", book=book
            )
            decided += 1
    return decided


async def _week_of_listening(session: AsyncSession, user_ids: list[int], today: date) -> dict[int, tuple[float, int]]:
    rows = await session.execute(
        select(
            ListeningLedger.user_id,
            func.sum(ListeningLedger.seconds),
            func.count(func.distinct(ListeningLedger.audiobook_id)),
        )
        .where(ListeningLedger.user_id.in_(user_ids), ListeningLedger.day > today - timedelta(days=7))
        .group_by(ListeningLedger.user_id)
    )
    return {user_id: (float(seconds or 0), int(books)) for user_id, seconds, books in rows}


async def _new_in_genres(session: AsyncSession, user_id: int, since: datetime) -> list[int]:
    """The week's books in the genres the listener follows or owns books of, most played first."""
    owned = owned_books(user_id)
    theirs = select(audiobook_genre.c.genre_id).join(owned, owned.c.audiobook_id == audiobook_genre.c.audiobook_id)
    followed = select(cast(Follow.target, Integer)).where(Follow.user_id == user_id, Follow.kind == FollowKind.GENRE)
    return list(
        await session.scalars(
            select(Audiobook.id)
            .join(audiobook_genre, audiobook_genre.c.audiobook_id == Audiobook.id)
            .where(
                Audiobook.created_at >= since,
                audiobook_genre.c.genre_id.in_(union(theirs, followed)),
            )
            .group_by(Audiobook.id, Audiobook.play_count)
            .order_by(Audiobook.play_count.desc(), Audiobook.id)
            .limit(DIGEST_ITEMS)
        )
    )


def make_summary_task(recommend: Recommend) -> Callable[[Resources], Awaitable[int]]:
    """The task that sends daily release summaries and weekly digests, with ``recommend`` filling the digests."""

    async def send_summaries_and_digests(resources: Resources) -> int:
        """Send each listener whose local hour it is their daily summary and, on their day, their digest."""
        now = datetime.now(UTC)
        settings = resources.settings
        decided, after = 0, 0
        while True:
            async with resources.database.get_session() as session:
                batch = [
                    _listener(row) for row in await session.execute(_listeners().where(User.id > after).limit(BATCH))
                ]
                if not batch:
                    return decided
                after = batch[-1].id
                due: list[tuple[Listener, datetime]] = []
                for listener in batch:
                    try:
                        local = now.astimezone(zoneinfo.ZoneInfo(listener.time_zone))
                    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                        local = now
                    if local.hour == listener.digest_hour:
                        due.append((listener, local))
                if due:
                    decided += await _summaries(session, resources, settings, due, now, recommend)
                await session.commit()

    return send_summaries_and_digests


async def _summaries(
    session: AsyncSession,
    resources: Resources,
    settings: Settings,
    due: list[tuple[Listener, datetime]],
    now: datetime,
    recommend: Recommend,
) -> int:
    decided = 0
    daily = [listener.id for listener, _ in due if listener.new_releases is ReleaseAlerts.DAILY]
    released: dict[int, list[int]] = {}
    if daily:
        # A SELECT, not a list of the day's books: after a bulk import that is every book (see release alerts).
        recent = select(Audiobook.id).where(Audiobook.created_at >= now - timedelta(days=1))
        pairs = followers_of(recent).subquery("followers")
        for user_id, book_id in await session.execute(
            select(pairs.c.user_id, pairs.c.audiobook_id)
            .where(pairs.c.user_id.in_(daily))
            .order_by(pairs.c.audiobook_id)
        ):
            released.setdefault(user_id, []).append(book_id)
    weekly = [
        (listener, local)
        for listener, local in due
        if listener.weekly_digest and local.weekday() == listener.digest_day
    ]
    listening = await _week_of_listening(session, [listener.id for listener, _ in weekly], now.date()) if weekly else {}
    for listener, local in due:
        if listener.id in released and await _decide(session, listener.id, "releases_daily", local.date().isoformat()):
            total = len(released[listener.id])
            newest = sorted(released[listener.id], reverse=True)[:SUMMARY_ITEMS]
            books = await _books(session, newest)
            await _send(
                session,
                settings,
                listener,
                "releases_daily",
                f"{total} new audiobook{'s' if total != 1 else ''} from what you follow",
                "releases",
                books=_with_links(settings, [books[book] for book in newest if book in books]),
                more=total - len(newest),
            )
            decided += 1
    for listener, local in weekly:
        year, week, _ = local.isocalendar()
        if not await _decide(session, listener.id, "digest", f"{year}-W{week:02d}"):
            continue
        picks = list(await recommend(session, resources.search_store, listener.id))[:DIGEST_ITEMS]
        new_ids = await _new_in_genres(session, listener.id, now - timedelta(days=7))
        new_books = await _books(session, new_ids)
        seconds, books_heard = listening.get(listener.id, (0.0, 0))
        await _send(
            session,
            settings,
            listener,
            "weekly_digest",
            "Your week in audiobooks",
            "digest",
            picks=[
                {"title": p.title, "reason": p.reason, "link": _link(settings, f"/api/audiobooks/{p.book_id}/")}
                for p in picks
            ],
            new_books=_with_links(settings, [new_books[i] for i in new_ids if i in new_books]),
            minutes_listened=round(seconds / 60),
            books_heard=books_heard,
        )
        decided += 1
    return decided


def tasks(recommend: Recommend) -> list[TaskSpec]:
    """The notification tasks, the digest filled by ``recommend`` (given by the composition root)."""
    return [
        TaskSpec(RELEASE_TASK, send_release_alerts, EVERY_MINUTE),
        # Every quarter hour, so half-hour time zones get their hour too; the sent-log keeps it to one mail.
        TaskSpec(SUMMARY_TASK, make_summary_task(recommend), {"schedule": [{"cron": "*/15 * * * *"}]}),
    ]

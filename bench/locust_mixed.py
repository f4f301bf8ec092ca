"""Locust listeners for ``bench.load_mixed``: discovery, playback start, progress saves and ranged stream reads.

Run by ``bench/load_mixed.py`` through locust's command line (``locust -f bench/locust_mixed.py
--fixture PATH ...``); the fixture, written there, holds the listeners' bearer headers, the words of
real titles to search for, genre slugs and book ids. Each locust user is one signed-in listener with
one device: it plays a book (``GET /playback/`` → a signed stream URL), saves its position every few
seconds as a player does, reads the audio in 256 KiB ranges of the signed URL ahead of the position,
and now and then searches, browses a genre, opens a book and its similar list, and starts another
book found that way. Task weights make progress saves and stream reads most of the traffic.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from locust import FastHttpUser, between, events, task
from locust.env import Environment

RANGE_BYTES = 256 * 1024
# Short of the book's last 30 s, which marks it finished; the listener then starts another book.
END_MARGIN_SECONDS = 5.0
CONTENT_RANGE_SIZE = re.compile(r"/(\d+)$")


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]  # locust's hooks are untyped
def add_options(parser: Any) -> None:
    parser.add_argument("--fixture", type=str, default="", help="JSON of listeners, title words, genres and books")
    parser.add_argument(
        "--anonymous-discovery",
        action="store_true",
        default=False,
        help="send discovery reads without the listener's token (the shared response cache answers them)",
    )


class Fixture:
    """What the orchestrator prepared, shared by every user of this locust process."""

    def __init__(self, path: str) -> None:
        data = json.loads(open(path, encoding="utf-8").read())  # noqa: SIM115 - read once at start
        self.title_words: list[list[str]] = data["title_words"]
        self.genres: list[str] = data["genres"]
        self.book_ids: list[int] = data["book_ids"]
        self._listeners: Iterator[dict[str, Any]] = itertools.cycle(data["listeners"])

    def next_listener(self) -> dict[str, Any]:
        # One locust process (gevent, no threads): each user takes the next account, so none share a device.
        return next(self._listeners)


FIXTURE: Fixture | None = None


@events.init.add_listener  # type: ignore[untyped-decorator]
def load_fixture(environment: Environment, **_: Any) -> None:
    global FIXTURE  # noqa: PLW0603 - locust's users are built by the runner, not by us
    options = environment.parsed_options
    if options is not None and options.fixture:
        FIXTURE = Fixture(options.fixture)


class Listener(FastHttpUser):
    wait_time = between(1, 3)

    def on_start(self) -> None:
        if FIXTURE is None:
            raise RuntimeError("run with --fixture (bench/load_mixed.py writes it)")
        self.fixture = FIXTURE
        account = self.fixture.next_listener()
        self.auth = {"Authorization": account["authorization"]}
        options = self.environment.parsed_options
        self.discovery_headers = {} if options is not None and options.anonymous_discovery else self.auth
        self.device = account["device"]
        self.candidates: list[int] = list(self.fixture.book_ids)
        self.start_playback(account["book_id"])

    def start_playback(self, book_id: int) -> None:
        """What a player does on play: ask for the signed URL, resume from the stored position."""
        with self.client.get(
            f"/api/audiobooks/{book_id}/playback/", headers=self.auth, name="playback start", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            playback = response.json()
        self.book_id = book_id
        self.stream_url: str = playback["stream_url"]
        self.duration: float = playback["duration_seconds"]
        stored = playback["progress"]
        resumed = stored["position_seconds"] if stored and not stored.get("is_completed") else 0.0
        self.played_from = (resumed, time.monotonic())
        self.size: int | None = None
        self.next_byte = 0

    def position(self) -> float:
        start, at = self.played_from
        return start + (time.monotonic() - at)

    @task(8)
    def save_progress(self) -> None:
        position = self.position()
        if position > self.duration - END_MARGIN_SECONDS:
            self.start_playback(random.choice(self.candidates))
            position = self.position()
        self.client.put(
            f"/api/progress/{self.book_id}/",
            json={
                "position_seconds": round(position, 1),
                "client_updated_at": datetime.now(UTC).isoformat(),
                "device_id": self.device,
            },
            headers=self.auth,
            name="progress save",
        )

    @task(6)
    def read_stream(self) -> None:
        """The next 256 KiB of the signed URL (no bearer: an ``<audio src>``), as a player buffers ahead."""
        if self.size is not None and self.next_byte >= self.size:
            self.next_byte = int(self.position() / self.duration * self.size) % self.size
        first = self.next_byte
        with self.client.get(
            self.stream_url,
            headers={"Range": f"bytes={first}-{first + RANGE_BYTES - 1}"},
            name="stream range (256 KiB)",
            catch_response=True,
        ) as response:
            if response.status_code != 206:
                response.failure(f"{response.status_code} for a range: {response.text[:200]}")
                return
            if self.size is None and (total := CONTENT_RANGE_SIZE.search(response.headers.get("Content-Range", ""))):
                self.size = int(total.group(1))
        self.next_byte = first + RANGE_BYTES

    @task(2)
    def search(self) -> None:
        words = random.choice(self.fixture.title_words)
        start = random.randrange(len(words))
        query = " ".join(words[start : start + random.randint(1, 3)])
        self.remember(
            self.client.get(
                "/api/audiobooks/search/", params={"q": query}, headers=self.discovery_headers, name="search"
            )
        )

    @task(1)
    def browse_genre(self) -> None:
        params = {"genre": random.choice(self.fixture.genres), "sort": "-average_rating", "limit": 20}
        self.remember(
            self.client.get("/api/audiobooks/", params=params, headers=self.discovery_headers, name="list by genre")
        )

    @task(1)
    def book_detail(self) -> None:
        book_id = random.choice(self.candidates)
        self.client.get(f"/api/audiobooks/{book_id}/", headers=self.discovery_headers, name="book detail")

    @task(1)
    def similar(self) -> None:
        book_id = random.choice(self.candidates)
        self.remember(
            self.client.get(f"/api/audiobooks/{book_id}/similar/", headers=self.discovery_headers, name="similar")
        )

    @task(1)
    def play_another(self) -> None:
        self.start_playback(random.choice(self.candidates))

    def remember(self, response: Any) -> None:
        """Books a listener just saw are what it opens and plays next."""
        if response.status_code == 200:
            # Search and list items are books; similar items hold theirs under "audiobook".
            items = [item.get("audiobook", item) for item in response.json()["items"]]
            self.candidates = [item["id"] for item in items] or self.candidates

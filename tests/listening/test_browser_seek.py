"""A real browser plays the signed stream URL in an <audio> element and seeks: range requests end to end."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.audio_fixtures import ffmpeg
from tests.browser import CHROMIUM_FLAGS, chromium_executable
from tests.serving import AUDIOVERSE, audioverse_run

pytestmark = pytest.mark.slow


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    """The real service (`audioverse run`) on a free port, as a browser would reach it."""
    data_dir = tmp_path / "var"
    subprocess.run(
        [AUDIOVERSE, "users", "create-admin", "--email", "dj@example.com", "--username", "dj",
         "--password", "a long browser password"],
        env={**os.environ, "AUDIOVERSE_DATA_DIR": str(data_dir)}, check=True, capture_output=True,
    )  # fmt: skip
    # Two demo books, so the browser also plays what the README's first command serves.
    with audioverse_run(data_dir, seed_demo_on_startup="true", demo_books="2") as server:
        yield server.url


def test_chromium_plays_and_seeks_the_stream(service: str, tmp_path: Path) -> None:
    chromium = chromium_executable()
    audio = tmp_path / "long.mp3"
    # Long and dense enough (10 min, ~9 MB) that the browser cannot have buffered the seek target.
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=300:duration=600",
        "-ac",
        "1",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "128k",
        str(audio),
    )
    tokens = httpx.post(
        f"{service}/api/auth/login/", json={"username_or_email": "dj", "password": "a long browser password"}
    ).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    with audio.open("rb") as handle:
        created = httpx.post(
            f"{service}/api/audiobooks/", headers=headers, data={"title": "Seekable", "authors": "Tester"},
            files={"audio": ("long.mp3", handle, "audio/mpeg")}, timeout=60,
        )  # fmt: skip
    assert created.status_code == 201, created.text
    playback = httpx.get(f"{service}/api/audiobooks/{created.json()['id']}/playback/", headers=headers).json()
    stream_url = service + playback["stream_url"]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            seen: list[tuple[str | None, int]] = []
            page.on(
                "response",
                lambda response: (
                    seen.append((response.request.headers.get("range"), response.status))
                    if "/stream/" in response.url
                    else None
                ),
            )
            page.set_content(f'<audio id="player" preload="metadata" src="{stream_url}"></audio>')
            page.evaluate("() => document.getElementById('player').play()")
            page.wait_for_function("() => document.getElementById('player').currentTime > 0.2", timeout=20_000)
            page.evaluate("() => { document.getElementById('player').currentTime = 500; }")
            page.wait_for_function("() => document.getElementById('player').currentTime >= 500.2", timeout=20_000)
            first = page.evaluate("() => document.getElementById('player').currentTime")
            page.wait_for_timeout(700)
            later = page.evaluate("() => document.getElementById('player').currentTime")
            demo = httpx.get(f"{service}/api/audiobooks/", params={"sort": "title", "limit": 1}).json()["items"][0]
            demo_url = (
                service
                + httpx.get(f"{service}/api/audiobooks/{demo['id']}/playback/", headers=headers).json()["stream_url"]
            )
            page.set_content(f'<audio id="demo" src="{demo_url}"></audio>')
            page.evaluate("() => document.getElementById('demo').play()")
            page.wait_for_function("() => document.getElementById('demo').currentTime > 0.5", timeout=20_000)
            demo_duration = page.evaluate("() => document.getElementById('demo').duration")
        finally:
            browser.close()
    assert abs(demo_duration - demo["duration_seconds"]) < 1
    assert first >= 500
    assert later > first  # it keeps playing after the seek
    partial = [(range_header, status) for range_header, status in seen if status == 206]
    assert partial, seen
    assert any(header and not header.startswith("bytes=0-") for header, _ in partial), seen

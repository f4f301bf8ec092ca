"""A newcomer's first start: the demo catalog is searchable at once, not after the minute's job sweep."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.serving import audioverse_run

pytestmark = pytest.mark.slow

# Well inside the minute after which the periodic sweep would send the seed's search drain anyway.
FIRST_SEARCH_SECONDS = 10


def test_the_demo_catalog_is_searchable_right_after_the_first_start(tmp_path: Path) -> None:
    with audioverse_run(tmp_path / "var", seed_demo_on_startup="true", demo_books="3") as server:
        books = httpx.get(f"{server.url}/api/audiobooks/", params={"limit": 3}).json()["items"]
        assert len(books) == 3
        wanted = books[0]
        deadline = time.monotonic() + FIRST_SEARCH_SECONDS
        while True:
            found = httpx.get(f"{server.url}/api/audiobooks/search/", params={"q": wanted["title"]}).json()
            if wanted["id"] in [item["id"] for item in found["items"]]:
                break
            assert time.monotonic() < deadline, f"not searchable {FIRST_SEARCH_SECONDS} s after start: {server.log()}"
            time.sleep(0.2)

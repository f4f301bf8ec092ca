"""The Chromium that the web app's and the admin's browser tests share, one per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.browser import CHROMIUM_FLAGS, chromium_executable


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, asked for before the server starts: a missing browser fails (CI) or skips at once."""
    chromium = chromium_executable()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()

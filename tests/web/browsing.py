"""What the browser tests share: the viewports, a watched page, the screenshot folder and the axe check."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page

REPO = Path(__file__).parents[2]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def artifacts_dir() -> Path:
    directory = Path(os.environ.get("AUDIOVERSE_TEST_ARTIFACTS", REPO / "test-artifacts" / "screenshots"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


class Watched:
    """A browser context whose pages' console errors and uncaught errors are collected."""

    def __init__(self, browser: Browser, viewport: dict[str, int], errors: list[str], name: str) -> None:
        self.context: BrowserContext = browser.new_context(viewport=viewport)
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.page.on("console", lambda message: self._console(name, message.type, message.text, errors))
        self.page.on("pageerror", lambda error: errors.append(f"{name}: {error}"))
        # Names the request behind a console's bare "Failed to load resource".
        self.page.on(
            "response",
            lambda response: (
                errors.append(f"{name}: {response.status} {response.request.method} {response.url}")
                if response.status >= 400
                else None
            ),
        )

    @staticmethod
    def _console(name: str, kind: str, text: str, errors: list[str]) -> None:
        if kind == "error":
            errors.append(f"{name}: {text}")


def serious_problems(page: Page, axe: Axe) -> list[str]:
    results: dict[str, Any] = axe.run(page).response
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']} at "
        f"{[node['target'] for node in violation['nodes']][:3]}"
        for violation in results["violations"]
        if violation["impact"] in {"serious", "critical"}
    ]

"""The API docs work offline: Swagger UI from this app's own files, started by no inline code, in a real browser."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Route, sync_playwright

from tests.browser import CHROMIUM_FLAGS, chromium_executable
from tests.serving import audioverse_run

pytestmark = pytest.mark.slow

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def test_the_docs_show_every_operation_in_chromium_with_no_network(tmp_path: Path) -> None:
    chromium = chromium_executable()
    with audioverse_run(tmp_path / "var") as server:
        document = httpx.get(f"{server.url}/api/schema/openapi.json").json()
        operations = sum(1 for item in document["paths"].values() for method in item if method in HTTP_METHODS)
        elsewhere: list[str] = []
        errors: list[str] = []

        def only_this_server(route: Route) -> None:
            # No network but loopback, as on a laptop offline: a CDN request fails here and is named.
            if route.request.url.startswith(server.url):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort()

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page()
                # A blocked inline script or style (the CSP) and a script that failed both show here.
                page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.route("**/*", only_this_server)
                page.goto(f"{server.url}/api/docs")
                page.wait_for_function(
                    f"() => document.querySelectorAll('.opblock').length === {operations}", timeout=30_000
                )
                summaries = page.locator(".opblock-summary-description").all_inner_texts()
                page.screenshot(path=tmp_path / "api-docs.png")
            finally:
                browser.close()
    assert "Every dependency answers" in summaries
    assert not elsewhere, elsewhere
    assert not errors, errors

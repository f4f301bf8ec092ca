"""The curator admin in Chromium on a real server: hide a review, reindex, and a listener turned away.

Any console or page error fails the test (a Content-Security-Policy violation shows as one).
Screenshots of the admin's main pages at desktop and phone width go to ``AUDIOVERSE_TEST_ARTIFACTS``
(``admin-*.png``), and axe-core checks each of those pages for serious or critical problems.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect

from tests.serving import Server, audioverse_run
from tests.web.browsing import DESKTOP, PHONE, Watched, artifacts_dir, serious_problems

pytestmark = pytest.mark.slow

DEMO_PASSWORD = "audioverse-demo-listener"
REINDEX_SECONDS = 60
MAIN_PAGES = {
    "home": "/admin/",
    "audiobooks": "/admin/audiobook/list",
    "audiobook-edit": "/admin/audiobook/edit/1",
    "reviews": "/admin/review/list",
    "upload": "/admin/upload",
    "chapters": "/admin/chapters?book=1",
    "moderation": "/admin/moderation",
    "search": "/admin/search",
    "recommendations": "/admin/recommendations",
    "jobs": "/admin/jobs",
}


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server with the demo catalog and its demo accounts (demo_curator, demo_listener)."""
    with audioverse_run(
        tmp_path_factory.mktemp("admin") / "var",
        seed_demo_on_startup="true",
        password_hash_profile="cheapest",
        log_json="true",
    ) as server:
        yield server


def api_review_by_the_demo_listener(server: Server, text: str) -> dict[str, Any]:
    """A review the (verified) demo listener writes through the API, on the first book they have not reviewed."""
    with httpx.Client(base_url=server.url, timeout=15) as api:
        tokens = api.post("/api/auth/login/", json={"username_or_email": "demo_listener", "password": DEMO_PASSWORD})
        assert tokens.status_code == 200, tokens.text
        headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
        for book in api.get("/api/audiobooks/", params={"limit": 20}).json()["items"]:
            written = api.post(
                f"/api/audiobooks/{book['id']}/reviews/", headers=headers, json={"rating": 1, "review_text": text}
            )
            if written.status_code == 201:
                body: dict[str, Any] = written.json()
                return body
            assert written.status_code == 409, written.text
    raise AssertionError("the demo listener has reviewed every listed book")


def visible_review_ids(server: Server, book_id: int) -> list[int]:
    listed = httpx.get(f"{server.url}/api/audiobooks/{book_id}/reviews/", params={"limit": 100}, timeout=15)
    assert listed.status_code == 200, listed.text
    return [item["id"] for item in listed.json()["items"]]


def sign_in(page: Page, server: Server, username: str) -> None:
    page.goto(f"{server.url}/admin/")
    page.get_by_label("Username or email").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_a_curator_hides_a_review_and_reindexes_and_a_listener_is_turned_away(
    demo_server: Server, browser: Browser
) -> None:
    errors: list[str] = []
    text = f"Admin moderation check {secrets.token_hex(4)}"
    written = api_review_by_the_demo_listener(demo_server, text)
    assert written["id"] in visible_review_ids(demo_server, written["audiobook_id"])

    desk = Watched(browser, DESKTOP, errors, "desktop")
    page = desk.page
    sign_in(page, demo_server, "demo_curator")
    expect(page).to_have_url(f"{demo_server.url}/admin/")

    # Hide the review from the moderation queue: it leaves the public listing.
    page.goto(f"{demo_server.url}/admin/moderation")
    row = page.locator(f'tr[data-review-id="{written["id"]}"]')
    expect(row).to_contain_text(text)
    row.get_by_label(f"Reason for review {written['id']}").fill("Not about the book")
    row.get_by_role("button", name="Hide").click()
    expect(page.get_by_role("status")).to_contain_text(f"Review {written['id']} is now hidden.")
    assert written["id"] not in visible_review_ids(demo_server, written["audiobook_id"])
    page.goto(f"{demo_server.url}/admin/moderation?status=hidden")
    expect(page.locator(f'tr[data-review-id="{written["id"]}"]')).to_contain_text("Reason: Not about the book")

    # Reindex: the status moves from what it was to running or straight on to succeeded.
    page.goto(f"{demo_server.url}/admin/search")
    before = page.locator("#reindex-state").inner_text()
    page.get_by_role("button", name="Reindex the catalog").click()
    expect(page.get_by_role("status")).to_contain_text("Reindex started")
    seen = page.locator("#search-status").get_attribute("data-reindex-state")
    assert seen in {"running", "succeeded"}, seen
    # The page reloads itself while the reindex runs.
    expect(page.locator("#search-status")).to_have_attribute(
        "data-reindex-state", "succeeded", timeout=REINDEX_SECONDS * 1000
    )
    after = page.locator("#reindex-state").inner_text()
    assert after != before
    assert "200 of 200" in after

    # The main pages at both widths: screenshots for people, axe for the basics of accessibility.
    phone = Watched(browser, PHONE, errors, "phone")
    sign_in(phone.page, demo_server, "demo_curator")
    expect(phone.page).to_have_url(f"{demo_server.url}/admin/")
    shots = artifacts_dir()
    axe = Axe()
    problems: list[str] = []
    for width_name, viewer in (("desktop", page), ("phone", phone.page)):
        viewer.goto(f"{demo_server.url}/admin/logout")
        viewer.screenshot(path=shots / f"admin-login-{width_name}.png")
        problems += [f"login/{width_name}: {found}" for found in serious_problems(viewer, axe)]
        sign_in(viewer, demo_server, "demo_curator")
        for page_name, path in MAIN_PAGES.items():
            viewer.goto(f"{demo_server.url}{path}")
            viewer.screenshot(path=shots / f"admin-{page_name}-{width_name}.png", full_page=True)
            problems += [f"{page_name}/{width_name}: {found}" for found in serious_problems(viewer, axe)]
    assert not problems, problems

    # A listener with the right password is refused, and no admin page opens to them afterwards.
    listener_errors: list[str] = []
    listener = Watched(browser, DESKTOP, listener_errors, "listener").page
    sign_in(listener, demo_server, "demo_listener")
    expect(listener.get_by_role("alert")).to_contain_text("it is for curators and admins")
    listener.goto(f"{demo_server.url}/admin/moderation")
    expect(listener).to_have_url(f"{demo_server.url}/admin/login")
    # The refusal itself is a 403 the console reports; anything else is an error.
    assert all("403" in error for error in listener_errors), listener_errors
    assert not errors, errors
    # Each admin request is logged under its whole path (routing to the mount strips it from the scope).
    logged = [json.loads(line) for line in demo_server.log().splitlines() if line.startswith("{")]
    assert any(line["event"] == "request" and line["path"] == "/admin/moderation" for line in logged)

"""The listener app in Chromium: register, verify, search with a typo, listen, resume after a reload and elsewhere.

Any console error or page error fails the test, and that is how a Content-Security-Policy violation
shows. Screenshots of the main pages at desktop and phone width are written as artifacts (directory from
``AUDIOVERSE_TEST_ARTIFACTS``), and axe-core checks each of those pages for serious or critical problems.
"""

from __future__ import annotations

import email
import re
import secrets
import time
from collections.abc import Iterator
from email import policy
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect

from tests.serving import Server, audioverse_run
from tests.web.browsing import DESKTOP, PHONE, Watched, artifacts_dir, serious_problems

pytestmark = pytest.mark.slow

PASSWORD = "a long listening phrase 42"
RESUME_TOLERANCE_SECONDS = 2.0
MAIL_WAIT_SECONDS = 15


def with_a_typo(title: str) -> str:
    """``title`` with two neighbouring letters of its longest word swapped, as a hurried typist would."""
    word = max(re.findall(r"[A-Za-z]+", title), key=len)
    typo = word[:2] + word[3] + word[2] + word[4:]
    return title.replace(word, typo, 1)


def emailed_link(mail_dir: Path, address: str, page_path: str) -> str:
    """The path and query of the ``page_path`` link emailed to ``address``; a background job writes it soon.

    Only the path is kept: the link names the configured public address, and this server's port varies.
    """
    deadline = time.monotonic() + MAIL_WAIT_SECONDS
    while True:
        for path in sorted(mail_dir.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            if address not in str(message["To"]):
                continue
            body = message.get_body(preferencelist=("plain", "html"))
            assert body is not None
            link = re.search(rf"https?://\S+{page_path}\?token=[\w.\-%]+", body.get_content())
            if link:
                parts = urlsplit(link.group(0))
                return f"{parts.path}?{parts.query}"
        assert time.monotonic() < deadline, f"no {page_path} email to {address} in {mail_dir}"
        time.sleep(0.2)


def audio_time(page: Page) -> float:
    value: float = page.evaluate("document.getElementById('audio').currentTime")
    return value


def wait_until_playing(page: Page) -> None:
    page.wait_for_function("() => !document.getElementById('audio').paused")
    page.wait_for_function("() => document.getElementById('audio').currentTime > 0")


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server with the demo catalog for this module's browsers; its mail lands in ``<data>/mail``."""
    with audioverse_run(
        tmp_path_factory.mktemp("player") / "var", seed_demo_on_startup="true", password_hash_profile="cheapest"
    ) as server:
        yield server


def mail_dir(server: Server) -> Path:
    return server.log_path.parent / "mail"


def register(page: Page, server: Server, name: str, address: str) -> None:
    page.goto(f"{server.url}/register")
    page.get_by_label("Email").fill(address)
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.locator("main").get_by_role("button", name="Register").click()
    expect(page.get_by_text("We sent a link")).to_be_visible()


def test_a_listener_finds_a_book_with_a_typo_listens_and_resumes_on_reload_and_on_another_device(
    browser: Browser, demo_server: Server
) -> None:
    server = demo_server
    shots = artifacts_dir()
    errors: list[str] = []
    name = f"listener{secrets.token_hex(3)}"
    address = f"{name}@example.com"
    popular = httpx.get(f"{server.url}/api/audiobooks/?sort=-play_count&limit=1").json()["items"][0]
    book = httpx.get(f"{server.url}/api/audiobooks/{popular['id']}/").json()
    assert len(book["chapters"]) >= 3, book
    second_chapter = book["chapters"][1]
    laptop = Watched(browser, DESKTOP, errors, "laptop")
    page = laptop.page

    # Register, then open the link from the verification email.
    register(page, server, name, address)
    page.goto(server.url + emailed_link(mail_dir(server), address, "/verify-email"))
    expect(page.get_by_text("Your email is verified")).to_be_visible()

    # Search as you type, with a typo; the results page; the book.
    page.goto(f"{server.url}/")
    expect(page.get_by_role("heading", name="Continue listening")).to_be_visible()
    search = page.get_by_role("combobox", name="Search audiobooks, authors and narrators")
    search.fill(with_a_typo(book["title"]))
    expect(page.get_by_role("option").filter(has_text=book["title"]).first).to_be_visible()
    search.press("Enter")
    result = page.locator(".result-title").filter(has_text=book["title"]).first
    expect(result).to_be_visible()
    result.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1, name=book["title"])).to_be_visible()

    # Play, jump to the second chapter, speed up; bookmark with a note, review, add to the library.
    page.get_by_role("button", name="Listen").click()
    wait_until_playing(page)
    page.locator(".chapter").filter(has_text=second_chapter["title"]).click()
    page.wait_for_function(
        f"() => document.getElementById('audio').currentTime >= {second_chapter['start_time_seconds']}"
    )
    expect(page.locator("#player-chapter")).to_have_text(second_chapter["title"])
    page.get_by_label("Speed").select_option("1.5")
    assert page.evaluate("document.getElementById('audio').playbackRate") == 1.5
    page.get_by_role("button", name="Bookmark").click()
    page.get_by_role("dialog").get_by_label("Note").fill("The hound appears")
    page.get_by_role("dialog").get_by_role("button", name="Save").click()
    expect(page.locator(".bookmarks")).to_contain_text("The hound appears")
    page.get_by_role("button", name="Add to library").click()
    expect(page.get_by_role("button", name="In your library")).to_be_visible()
    page.wait_for_timeout(1000)
    left_at = audio_time(page)
    assert left_at > second_chapter["start_time_seconds"]

    # A reload comes back paused where the listener was, at the same speed.
    page.reload()
    expect(page.locator("#player")).to_be_visible()
    page.wait_for_function("() => document.getElementById('audio').readyState >= 1")
    resumed_at = audio_time(page)
    assert abs(resumed_at - left_at) <= RESUME_TOLERANCE_SECONDS, (left_at, resumed_at)
    assert page.evaluate("document.getElementById('audio').playbackRate") == 1.5

    page.get_by_label("Rating").select_option("4")
    page.get_by_label("Review (optional)").fill("Atmospheric and gripping.")
    page.get_by_role("button", name="Post review").click()
    expect(page.locator(".reviews")).to_contain_text("Atmospheric and gripping.")

    # Another device, signed in on its own, picks up at the same place.
    phone = Watched(browser, PHONE, errors, "phone")
    other = phone.page
    other.goto(f"{server.url}/login")
    other.get_by_label("Username or email").fill(address)
    other.get_by_label("Password").fill(PASSWORD)
    other.locator("main").get_by_role("button", name="Log in").click()
    expect(other.get_by_role("heading", name="Continue listening")).to_be_visible()
    other.locator(".shelf").first.get_by_role("link", name=book["title"]).click()
    other.get_by_role("button", name="Listen").click()
    wait_until_playing(other)
    there = audio_time(other)
    assert abs(there - resumed_at) <= RESUME_TOLERANCE_SECONDS, (resumed_at, there)
    other.get_by_role("button", name="Pause").click()
    phone.context.close()

    # The sleep timer stops at the end of the chapter being heard.
    third_chapter = book["chapters"][2]
    page.get_by_label("Sleep").select_option("chapter")
    page.get_by_label("Position").fill(str(int(third_chapter["start_time_seconds"]) - 2))
    page.get_by_role("button", name="Play").click()
    page.wait_for_function("() => document.getElementById('audio').paused", timeout=8_000)
    assert abs(audio_time(page) - third_chapter["start_time_seconds"]) < 1.0, audio_time(page)
    expect(page.get_by_label("Sleep")).to_have_value("0")

    # The main pages at both widths: screenshots for people, axe for the basics of accessibility.
    axe = Axe()
    problems: dict[str, list[str]] = {}
    pages = {
        "home": ("/", "Continue listening"),
        "search": (f"/search?q={book['authors'][0]['name'].split()[-1]}", "Search"),
        "book": (f"/books/{book['id']}", book["title"]),
        "library": ("/library", "Your library"),
        "profile": ("/profile", name),
    }
    for width_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        for page_name, (path, heading) in pages.items():
            page.goto(server.url + path)
            expect(page.get_by_role("heading", name=heading).first).to_be_visible()
            expect(page.locator("#player")).to_be_visible()
            page.screenshot(path=shots / f"{page_name}-{width_name}.png")
            if found := serious_problems(page, axe):
                problems[f"{page_name} ({width_name})"] = found
    laptop.context.close()
    assert not errors, errors
    assert not problems, problems


def test_a_listener_who_forgot_the_password_resets_it_from_the_email_and_logs_in(
    browser: Browser, demo_server: Server
) -> None:
    server = demo_server
    errors: list[str] = []
    name = f"forgetful{secrets.token_hex(3)}"
    address = f"{name}@example.com"
    new_password = "another long phrase 7"
    page = Watched(browser, PHONE, errors, "phone").page
    register(page, server, name, address)
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Log in")).to_be_visible()

    page.goto(f"{server.url}/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill(address)
    page.get_by_role("button", name="Send reset link").click()
    expect(page.get_by_text("a reset link is on its way")).to_be_visible()
    page.goto(server.url + emailed_link(mail_dir(server), address, "/reset-password"))
    page.get_by_label("New password").fill(new_password)
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_text("Your password is changed")).to_be_visible()

    page.locator("main").get_by_role("link", name="Log in").click()
    page.get_by_label("Username or email").fill(name)
    page.get_by_label("Password").fill(new_password)
    page.locator("main").get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name="Profile")).to_be_visible()
    page.goto(f"{server.url}/profile")
    expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()
    assert not errors, errors


def test_a_device_coming_back_adopts_the_newer_place_another_device_reached_meanwhile(
    browser: Browser, demo_server: Server
) -> None:
    server = demo_server
    errors: list[str] = []
    name = f"traveller{secrets.token_hex(3)}"
    address = f"{name}@example.com"
    second = httpx.get(f"{server.url}/api/audiobooks/?sort=-play_count&limit=1&offset=1").json()["items"][0]
    book = httpx.get(f"{server.url}/api/audiobooks/{second['id']}/").json()
    laptop = Watched(browser, DESKTOP, errors, "laptop")
    page = laptop.page
    register(page, server, name, address)
    page.goto(f"{server.url}/books/{book['id']}")
    page.get_by_role("button", name="Listen").click()
    wait_until_playing(page)
    page.wait_for_timeout(500)
    # Leaving while playing: the place goes out with the page (keepalive) and stays on this device.
    page.goto("about:blank")

    tokens = httpx.post(f"{server.url}/api/auth/login/", json={"username_or_email": name, "password": PASSWORD}).json()
    elsewhere = book["chapters"][2]["start_time_seconds"]
    tablet = httpx.post(
        f"{server.url}/api/progress/{book['id']}/",
        json={"position_seconds": elsewhere, "device_id": "tablet"},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert tablet.status_code in {200, 201}, tablet.text

    # Back on the laptop, its kept place is older than the tablet's: the server says 409 and the player follows.
    page.goto(f"{server.url}/books/{book['id']}")
    expect(page.locator("#player")).to_be_visible()
    page.wait_for_function("() => document.getElementById('audio').readyState >= 1")
    assert abs(audio_time(page) - elsewhere) < 1.0, (audio_time(page), elsewhere)
    laptop.context.close()
    conflicts = [error for error in errors if "409" in error]
    assert conflicts, "the laptop's older place was not refused"
    assert not [error for error in errors if "409" not in error], errors


@pytest.mark.parametrize("book_id", ["987654321", "9007199254740993"])  # the second past 2**53
def test_a_book_address_that_names_no_book_shows_page_not_found(
    browser: Browser, demo_server: Server, book_id: str
) -> None:
    errors: list[str] = []
    page = Watched(browser, PHONE, errors, "phone").page
    page.goto(f"{demo_server.url}/books/{book_id}")
    expect(page.get_by_role("heading", level=1, name="Page not found")).to_be_visible()
    # Only the API's own 404 for the missing book, nothing else.
    assert [
        error for error in errors if f"/api/audiobooks/{book_id}/" not in error and "Failed to load" not in error
    ] == []

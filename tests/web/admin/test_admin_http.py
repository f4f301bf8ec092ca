"""The curator admin through the app: who gets in, CSRF on every form, and edits that behave like the API's."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from audioverse.accounts.models import Role, User
from audioverse.config import Settings
from tests.accounts.test_auth_flow import bearer, login, register
from tests.audio_fixtures import mp3_with_chapters
from tests.catalog.fixtures import MakeBook, Tokens
from tests.catalog.test_search_api import ids, wait_for
from tests.reviews.test_reviews_api import review, wait_for_figures
from tests.services import Identity, database_for

Client = AsyncTestClient[Litestar]
TOKEN_IN_PAGE = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


async def account_with_role(client: Client, settings: Settings, role: Role) -> Identity:
    """A verified account of ``role``, made through registration as any account is."""
    identity = Identity.new()
    await register(client, identity)
    async with database_for(settings) as database, database.get_session() as session:
        user = await session.scalar(select(User).where(User.username == identity.username))
        assert user is not None
        user.role, user.is_verified = role, True
        await session.commit()
    return identity


async def page_token(client: Client, path: str = "/admin/login") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    found = TOKEN_IN_PAGE.search(page.text)
    assert found is not None, page.text
    return found.group(1)


async def sign_in(client: Client, identity: Identity) -> httpx.Response:
    """Post the admin's login form as a browser does, with the token the page gave."""
    token = await page_token(client)
    return await client.post(
        "/admin/login",
        data={"csrftoken": token, "username": identity.username, "password": identity.password},
    )


@pytest.fixture
async def admin_client(client: Client) -> Any:
    """The app's client, with no admin session and not following redirects, put back as it was after the test."""
    client.cookies.clear()
    following, client.follow_redirects = client.follow_redirects, False
    yield client
    client.follow_redirects = following
    client.cookies.clear()


@pytest.fixture
async def curator_signed_in(admin_client: Client, settings: Settings) -> Identity:
    identity = await account_with_role(admin_client, settings, Role.CURATOR)
    signed = await sign_in(admin_client, identity)
    assert signed.status_code == 302, signed.text
    assert signed.headers["location"].endswith("/admin/")
    return identity


async def test_anonymous_visitors_are_sent_to_the_login_page(admin_client: Client) -> None:
    for path in ("/admin/", "/admin/audiobook/list", "/admin/moderation", "/admin/search", "/admin/user/list"):
        response = await admin_client.get(path)
        assert response.status_code == 302, path
        assert response.headers["location"].endswith("/admin/login"), path
    login_page = await admin_client.get("/admin/login")
    assert login_page.status_code == 200
    assert 'name="password"' in login_page.text


async def test_a_listener_is_refused_and_gets_no_session(admin_client: Client, settings: Settings) -> None:
    listener = await account_with_role(admin_client, settings, Role.LISTENER)
    refused = await sign_in(admin_client, listener)
    assert refused.status_code == 403
    assert "it is for curators and admins" in refused.text
    assert (await admin_client.get("/admin/")).status_code == 302
    wrong = await sign_in(admin_client, Identity(listener.username, listener.email, "not-the-password-1"))
    assert wrong.status_code == 401
    assert "Wrong username or password." in wrong.text


async def test_a_curator_sees_the_catalog_under_the_apps_policy(
    admin_client: Client, curator_signed_in: Identity, make_book: MakeBook, tag: str
) -> None:
    await make_book(title=f"Admin listed {tag}")
    listed = await admin_client.get("/admin/audiobook/list", params={"search": tag})
    assert listed.status_code == 200
    assert f"Admin listed {tag}" in listed.text
    policy = listed.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert listed.headers["cache-control"] == "no-store"
    for path in ("/admin/moderation", "/admin/search", "/admin/recommendations", "/admin/jobs", "/admin/genre/list"):
        assert (await admin_client.get(path)).status_code == 200, path


async def test_the_session_cookie_is_httponly_strict_and_scoped_to_the_admin(
    admin_client: Client, settings: Settings
) -> None:
    identity = await account_with_role(admin_client, settings, Role.CURATOR)
    signed = await sign_in(admin_client, identity)
    cookie = signed.headers["set-cookie"].lower()
    assert cookie.startswith("audioverse_admin=")
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/admin" in cookie
    # The test deployment's public URL is http://, where a Secure cookie would never come back.
    assert ("secure" in cookie) is settings.public_base_url.startswith("https://")


async def test_users_and_roles_are_for_admins_only(admin_client: Client, settings: Settings) -> None:
    curator = await account_with_role(admin_client, settings, Role.CURATOR)
    await sign_in(admin_client, curator)
    assert (await admin_client.get("/admin/user/list")).status_code == 403
    assert "/admin/user/list" not in (await admin_client.get("/admin/")).text
    admin_client.cookies.clear()
    admin = await account_with_role(admin_client, settings, Role.ADMIN)
    await sign_in(admin_client, admin)
    users = await admin_client.get("/admin/user/list", params={"search": curator.username})
    assert users.status_code == 200
    assert curator.username in users.text


async def test_an_admin_changes_a_role_and_the_old_session_ends(admin_client: Client, settings: Settings) -> None:
    curator = await account_with_role(admin_client, settings, Role.CURATOR)
    async with database_for(settings) as database, database.get_session() as session:
        curator_id = await session.scalar(select(User.id).where(User.username == curator.username))
    admin = await account_with_role(admin_client, settings, Role.ADMIN)
    await sign_in(admin_client, admin)
    token = await page_token(admin_client, f"/admin/user/edit/{curator_id}")
    changed = await admin_client.post(
        f"/admin/user/edit/{curator_id}", data={"csrftoken": token, "role": "listener", "save": "Save"}
    )
    assert changed.status_code == 302, changed.text
    admin_client.cookies.clear()
    assert (await sign_in(admin_client, curator)).status_code == 403


async def test_a_post_without_the_token_is_refused_and_changes_nothing(
    admin_client: Client, curator_signed_in: Identity, make_book: MakeBook, tag: str
) -> None:
    book_id = await make_book(title=f"Guarded {tag}")
    edit = f"/admin/audiobook/edit/{book_id}"
    fields = {"title": f"Forged {tag}", "authors": "Anonymous", "language": "en", "save": "Save"}
    assert (await admin_client.post(edit, data=fields)).status_code == 403
    assert (await admin_client.post(edit, data={**fields, "csrftoken": "not-the-token"})).status_code == 403
    assert (await admin_client.post("/admin/search/reindex", data={})).status_code == 403
    assert (await admin_client.delete(f"/admin/audiobook/delete?pks={book_id}")).status_code == 403
    assert (await admin_client.get(f"/api/audiobooks/{book_id}/")).json()["title"] == f"Guarded {tag}"
    # The login form is guarded too: a forged sign-in cannot plant a session.
    admin_client.cookies.clear()
    forged_login = await admin_client.post("/admin/login", data={"username": "someone", "password": "anything"})
    assert forged_login.status_code == 403


@pytest.mark.search
async def test_a_book_edited_in_the_admin_is_searchable_by_its_new_title(
    admin_client: Client, curator_signed_in: Identity, make_book: MakeBook, tag: str
) -> None:
    book_id = await make_book(title=f"Before {tag}", genres=(f"Genre {tag}",))
    await wait_for(admin_client, lambda b: book_id in ids(b), genre=f"genre-{tag}")
    token = await page_token(admin_client, f"/admin/audiobook/edit/{book_id}")
    edited = await admin_client.post(
        f"/admin/audiobook/edit/{book_id}",
        data={
            "csrftoken": token,
            "title": f"Zanzibar Voyage {tag}",
            "authors": f"New Author {tag}, Anonymous",
            "narrators": "",
            "genres": f"Genre {tag}",
            "language": "en",
            "description": "Edited in the admin.",
            "save": "Save",
        },
    )
    assert edited.status_code == 302, edited.text
    book = (await admin_client.get(f"/api/audiobooks/{book_id}/")).json()
    assert book["title"] == f"Zanzibar Voyage {tag}"
    assert {author["name"] for author in book["authors"]} == {f"New Author {tag}", "Anonymous"}
    found = await wait_for(admin_client, lambda b: book_id in ids(b), q="Zanzibar", genre=f"genre-{tag}")
    assert found["items"][0]["title"] == f"Zanzibar Voyage {tag}"


async def test_the_api_rules_hold_for_an_admin_edit(
    admin_client: Client, curator_signed_in: Identity, make_book: MakeBook, tag: str
) -> None:
    book_id = await make_book(title=f"Ruled {tag}")
    token = await page_token(admin_client, f"/admin/audiobook/edit/{book_id}")
    refused = await admin_client.post(
        f"/admin/audiobook/edit/{book_id}",
        data={"csrftoken": token, "title": "x" * 501, "authors": "Anonymous", "language": "en", "save": "Save"},
    )
    assert refused.status_code == 400
    assert (await admin_client.get(f"/api/audiobooks/{book_id}/")).json()["title"] == f"Ruled {tag}"


async def test_a_review_hidden_in_the_admin_leaves_the_listing_and_the_figures(
    admin_client: Client,
    curator_signed_in: Identity,
    make_book: MakeBook,
    uploader: Tokens,
    other_listener: Tokens,
    tag: str,
) -> None:
    book_id = await make_book(title=f"Moderated {tag}")
    rude = await review(admin_client, uploader, book_id, 1, f"Rude words {tag}")
    await review(admin_client, other_listener, book_id, 5, "Lovely.")
    await wait_for_figures(admin_client, book_id, (3.0, 2, 2))
    queue = await admin_client.get("/admin/moderation")
    assert f"Rude words {tag}" in queue.text
    token = TOKEN_IN_PAGE.search(queue.text)
    assert token is not None
    hidden = await admin_client.post(
        f"/admin/moderation/{rude['id']}",
        data={"csrftoken": token.group(1), "status": "hidden", "reason": "Abusive", "from": "visible"},
    )
    assert hidden.status_code == 303
    after = await admin_client.get(hidden.headers["location"])
    assert f"Review {rude['id']} is now hidden." in after.text
    listed = (await admin_client.get(f"/api/audiobooks/{book_id}/reviews/")).json()
    assert listed["total"] == 1
    assert rude["id"] not in [item["id"] for item in listed["items"]]
    await wait_for_figures(admin_client, book_id, (5.0, 1, 1))
    hidden_queue = await admin_client.get("/admin/moderation", params={"status": "hidden"})
    assert f"Rude words {tag}" in hidden_queue.text
    assert "Reason: Abusive" in hidden_queue.text


async def test_reviews_can_be_hidden_only_with_a_reason(
    admin_client: Client, curator_signed_in: Identity, make_book: MakeBook, uploader: Tokens, tag: str
) -> None:
    book_id = await make_book(title=f"Unreasoned {tag}")
    written = await review(admin_client, uploader, book_id, 2, f"Meh {tag}")
    token = await page_token(admin_client, "/admin/moderation")
    refused = await admin_client.post(
        f"/admin/moderation/{written['id']}", data={"csrftoken": token, "status": "hidden", "reason": " "}
    )
    assert refused.status_code == 303
    page = await admin_client.get(refused.headers["location"])
    assert f"Review {written['id']} unchanged" in page.text
    listed = (await admin_client.get(f"/api/audiobooks/{book_id}/reviews/", headers=bearer(uploader))).json()
    assert [item["id"] for item in listed["items"]] == [written["id"]]


async def test_a_reindex_started_in_the_admin_shows_on_its_status(
    admin_client: Client, curator_signed_in: Identity, make_book: MakeBook, tag: str, settings: Settings
) -> None:
    await make_book(title=f"Reindexed in the admin {tag}")
    token = await page_token(admin_client, "/admin/search")
    started = await admin_client.post("/admin/search/reindex", data={"csrftoken": token})
    assert started.status_code == 303
    page = (await admin_client.get(started.headers["location"])).text
    assert "Reindex started (job " in page
    assert re.search(r'data-reindex-state="(running|succeeded)"', page), page
    api_tokens = await login(admin_client, curator_signed_in.username, curator_signed_in.password)
    status = (await admin_client.get("/api/admin/search/status/", headers=bearer(api_tokens))).json()
    assert status["reindex"]["state"] in {"running", "succeeded"}


async def test_a_curator_uploads_a_book_and_its_file_is_read_as_the_api_reads_it(
    admin_client: Client, curator_signed_in: Identity, tmp_path: Path
) -> None:
    expected = mp3_with_chapters(tmp_path)
    token = await page_token(admin_client, "/admin/upload")
    sent = await admin_client.post(
        "/admin/upload",
        data={"csrftoken": token, "language": "en", "title": "", "series": "Sea stories"},
        # A browser sends the cover input it was given no file for as an empty, nameless part.
        files={
            "audio": ("book.mp3", expected.path.read_bytes(), "audio/mpeg"),
            "cover": ("", b"", "application/octet-stream"),
        },
    )
    assert sent.status_code == 303, sent.text
    book_id = int(sent.headers["location"].rstrip("/").rsplit("/", 1)[-1])
    book = (await admin_client.get(f"/api/audiobooks/{book_id}/")).json()
    assert book["title"] == "The Sea Wolf"  # from the file's tags, the form's empty title left out
    assert book["series"] == "Sea stories"
    assert [chapter["title"] for chapter in book["chapters"]] == [title for title, _, _ in expected.chapters]
    assert "Uploaded “The Sea Wolf”" in (await admin_client.get(sent.headers["location"])).text


async def test_an_upload_that_is_not_audio_is_refused_in_words_and_leaves_no_book(
    admin_client: Client, curator_signed_in: Identity, tag: str
) -> None:
    token = await page_token(admin_client, "/admin/upload")
    sent = await admin_client.post(
        "/admin/upload",
        data={"csrftoken": token, "title": f"Not audio {tag}", "language": "en"},
        files={"audio": ("notes.mp3", b"these are not sounds" * 100, "audio/mpeg")},
    )
    assert sent.status_code == 303
    assert "Not uploaded: The audio file cannot be used" in (await admin_client.get(sent.headers["location"])).text
    found = (await admin_client.get("/api/audiobooks/", params={"q": tag})).json()
    assert all(item["title"] != f"Not audio {tag}" for item in found["items"])


NOT_AN_ID = ["abc", "0", "-1", "1.5", "²", "99999999999999999999", "9" * 5000]


@pytest.mark.parametrize(
    "page", ["audiobook/details", "audiobook/edit", "author/edit", "review/details", "user-account/edit"]
)
async def test_an_address_that_names_no_row_is_404_not_500(admin_client: Client, settings: Settings, page: str) -> None:
    admin = await account_with_role(admin_client, settings, Role.ADMIN)
    assert (await sign_in(admin_client, admin)).status_code == 302
    for identifier in NOT_AN_ID:
        answer = await admin_client.get(f"/admin/{page}/{identifier}")
        assert answer.status_code == 404, (identifier[:30], answer.status_code)


async def test_moderating_a_review_that_cannot_exist_is_404_and_a_bad_page_number_is_the_first(
    admin_client: Client, curator_signed_in: Identity
) -> None:
    token = await page_token(admin_client, "/admin/moderation")
    for identifier in NOT_AN_ID:
        answer = await admin_client.post(
            f"/admin/moderation/{identifier}", data={"csrftoken": token, "status": "hidden", "reason": "spam"}
        )
        assert answer.status_code == 404, (identifier[:30], answer.status_code)
    for page in ("²", "9" * 5000, "-3"):
        assert (await admin_client.get("/admin/moderation", params={"page": page})).status_code == 200


async def test_a_curator_replaces_a_books_chapters_as_text_and_the_api_serves_them(
    admin_client: Client, curator_signed_in: Identity, make_book: MakeBook, tag: str
) -> None:
    book_id = await make_book(title=f"Chaptered {tag}", duration=600.0, chapters=3)
    page = await admin_client.get("/admin/chapters", params={"book": str(book_id)})
    assert page.status_code == 200, page.text
    assert "0:00:00 " in page.text
    assert "0:10:00 long" in page.text
    token = await page_token(admin_client, f"/admin/chapters?book={book_id}")

    async def save(text: str) -> str:
        answer = await admin_client.post(f"/admin/chapters/{book_id}", data={"csrftoken": token, "chapters": text})
        assert answer.status_code == 303, answer.text
        return (await admin_client.get(answer.headers["location"])).text

    shown = await save("0:00 Arrival\n\n2:30.5 The storm\n450 Home again")
    assert "Saved 3 chapters." in shown
    chapters = (await admin_client.get(f"/api/audiobooks/{book_id}/chapters/")).json()
    assert [(c["title"], c["start_time_seconds"], c["end_time_seconds"]) for c in chapters] == [
        ("Arrival", 0.0, 150.5),
        ("The storm", 150.5, 450.0),
        ("Home again", 450.0, 600.0),
    ]
    # Refused in words and nothing changes: a line that is no chapter, starts out of order, past the end.
    for text, words in [
        ("0:00 Arrival\nsoon The storm", "Line 2 is not a start time and a title"),
        ("0:00 Arrival\n5:00 Late\n2:00 Early", "Chapters not saved"),
        ("0:00 Arrival\n11:00 After the end", "Chapters not saved"),
    ]:
        assert words in await save(text)
    again = (await admin_client.get(f"/api/audiobooks/{book_id}/chapters/")).json()
    assert [chapter["title"] for chapter in again] == ["Arrival", "The storm", "Home again"]
    assert (
        await admin_client.post("/admin/chapters/abc", data={"csrftoken": token, "chapters": "0 A"})
    ).status_code == 404
    missing = await admin_client.get("/admin/chapters", params={"book": "987654321"})
    assert "No audiobook with id 987654321." in missing.text
    assert "Save chapters" not in missing.text


async def test_a_form_past_the_pages_limit_is_refused_before_it_is_read(
    admin_client: Client, curator_signed_in: Identity, settings: Settings
) -> None:
    # The login form, open to anyone: a body past the API's JSON limit is refused unread (never spooled).
    too_big = b"x" * (settings.max_body_bytes + 1)
    refused = await admin_client.post(
        "/admin/login", content=too_big, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert refused.status_code == 413

    async def in_chunks() -> AsyncIterator[bytes]:
        yield b"synonyms=a"
        yield b",b"

    chunked = await admin_client.post(
        "/admin/search/synonyms",
        content=in_chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert chunked.status_code == 411
    lying = await admin_client.post(
        "/admin/upload", content=b"", headers={"Content-Length": "9" * 40, "Content-Type": "multipart/form-data"}
    )
    assert lying.status_code == 413

"""Hostile input never costs a 500 or the process: out-of-range numbers, deep pages, NUL, bad bodies."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from audioverse.accounts.models import Role
from audioverse.bodies import MAX_JSON_DEPTH, nests_deeper_than
from audioverse.config import Settings
from audioverse.errors import QUERY_TEXT_PATTERN
from search.query import MAX_RESULT_WINDOW
from tests.accounts.test_auth_flow import bearer
from tests.audio_fixtures import mp3_with_chapters
from tests.catalog.fixtures import MakeBook, Tokens, account
from tests.catalog.test_search_api import wait_for

Client = AsyncTestClient[Litestar]
PAST_INT64 = "9223372036854775808"
BELOW_INT64 = "-9223372036854775809"


@pytest.fixture
async def admin(client: Client, settings: Settings) -> Tokens:
    """Allowed everywhere, so what answers is the input check and never a guard."""
    return await account(client, settings, Role.ADMIN, verified=True)


def assert_problem(response: Any, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.request.url, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body


def id_routes(app: Litestar) -> list[tuple[str, str]]:
    """Every (method, path template) of the app with an integer in its path."""
    return [
        (method, route.path)
        for route in app.routes
        if isinstance(route, HTTPRoute) and ":int}" in route.path
        for method in sorted(route.methods - {"OPTIONS", "HEAD"})
    ]


@pytest.mark.parametrize("number", [PAST_INT64, BELOW_INT64, "0"])
async def test_every_route_refuses_an_id_outside_the_64_bit_range(
    client: Client, app: Litestar, admin: Tokens, number: str
) -> None:
    routes = id_routes(app)
    assert len(routes) >= 29
    for method, template in routes:
        path = re.sub(r"\{\w+:int\}", number, template)
        response = await client.request(method, path, headers=bearer(admin))
        body = assert_problem(response, 404, 422)
        if response.status_code == 422:
            assert any(error["field"].endswith("_id") for error in body["errors"]), (method, path, body)


async def test_the_anonymous_reports_are_4xx(client: Client) -> None:
    for path, params in [
        ("/api/audiobooks/search/", {"offset": "1000000000"}),
        ("/api/audiobooks/search/", {"offset": PAST_INT64}),
        ("/api/audiobooks/search/", {"author": PAST_INT64}),
        ("/api/audiobooks/", {"offset": PAST_INT64}),
        ("/api/audiobooks/", {"limit": PAST_INT64}),
        ("/api/audiobooks/", {"author": PAST_INT64}),
        ("/api/audiobooks/", {"narrator": BELOW_INT64}),
        ("/api/audiobooks/1/reviews/", {"rating": PAST_INT64}),
        ("/api/search/suggest/", {"limit": PAST_INT64}),
        (f"/api/audiobooks/{PAST_INT64}", {}),
    ]:
        assert_problem(await client.get(path, params=params), 422)


@pytest.mark.search
async def test_the_largest_id_is_simply_not_found(client: Client) -> None:
    largest = str(2**63 - 1)
    for path in ["/api/audiobooks/", "/api/audiobooks/search/"]:
        for name in ["author", "narrator"]:
            response = await client.get(path, params={name: largest})
            assert (response.status_code, response.json()["total"]) == (200, 0), response.text
    assert_problem(await client.get(f"/api/audiobooks/{largest}"), 404)
    assert_problem(await client.get(f"/api/authors/{largest}"), 404)


QUERY_TEXT_MESSAGE = "Must be UTF-8 text (percent-encoded) without the NUL character (U+0000)."


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/authors/", {"q": "a\x00b"}),
        ("/api/narrators/", {"q": "a\x00b"}),
        ("/api/audiobooks/", {"language": "e\x00n"}),
        ("/api/audiobooks/", {"genre": "fic\x00tion"}),
        ("/api/audiobooks/search/", {"q": "holmes\x00"}),
        ("/api/search/suggest/", {"q": "ho\x00"}),
        ("/api/audiobooks/1/stream/", {"token": "a\x00b"}),
    ],
)
async def test_nul_in_a_query_string_is_422(client: Client, path: str, params: dict[str, str]) -> None:
    body = assert_problem(await client.get(path, params=params), 422)
    assert body["errors"] == [{"field": next(iter(params)), "message": QUERY_TEXT_MESSAGE}]


@pytest.mark.parametrize(
    "url", ["/api/audiobooks/search/?q=%ff%fe", "/api/search/suggest/?q=ab%c3", "/api/authors/?q=%80"]
)
async def test_bytes_that_are_not_utf8_in_a_query_string_are_422(client: Client, url: str) -> None:
    body = assert_problem(await client.get(url), 422)
    assert body["errors"] == [{"field": "q", "message": QUERY_TEXT_MESSAGE}]


async def test_facets_outside_their_names_are_422(client: Client) -> None:
    for facets in ["genres\x00", "genres, languages", "colours"]:
        body = assert_problem(await client.get("/api/audiobooks/search/", params={"facets": facets}), 422)
        assert [error["field"] for error in body["errors"]] == ["facets"]


async def test_nul_in_the_shelf_filter_is_422(client: Client, admin: Tokens) -> None:
    response = await client.get("/api/library/", params={"shelf": "to\x00read"}, headers=bearer(admin))
    assert assert_problem(response, 422)["errors"][0]["field"] == "shelf"


async def test_nul_in_a_login_is_422_not_a_database_error(client: Client) -> None:
    response = await client.post(
        "/api/auth/login/", json={"username_or_email": "demo\x00listener", "password": "audioverse-demo-listener"}
    )
    body = assert_problem(response, 422)
    assert body["errors"] == [{"field": "username_or_email", "message": "Must not contain the NUL character (U+0000)."}]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        (
            "POST",
            "/api/auth/register/",
            {"email": "a@b.co", "username": "nul_u", "password": "long enough\x00"},
            "password",
        ),
        (
            "POST",
            "/api/auth/register/",
            {"email": "a\x00@b.co", "username": "nul_u", "password": "long enough"},
            "email",
        ),
        ("PATCH", "/api/users/me/", {"bio": "hello\x00"}, "bio"),
        ("PATCH", "/api/audiobooks/{book}/", {"title": "Title\x00"}, "title"),
        ("PATCH", "/api/audiobooks/{book}/", {"authors": ["Mary\x00Shelley"]}, "authors[0]"),
        (
            "PUT",
            "/api/audiobooks/{book}/chapters/",
            [{"title": "1\x00", "start_time_seconds": 0, "end_time_seconds": 1}],
            "[0].title",
        ),
        ("PATCH", "/api/authors/{author}/", {"website": "https://example.com/\x00"}, "website"),
        ("POST", "/api/audiobooks/{book}/reviews/", {"rating": 5, "review_text": "great\x00"}, "review_text"),
        ("POST", "/api/audiobooks/{book}/bookmarks/", {"position_seconds": 1, "note": "here\x00"}, "note"),
        ("POST", "/api/progress/{book}/", {"position_seconds": 1, "device_id": "phone\x00"}, "device_id"),
        ("POST", "/api/library/{book}/", {"shelf": "later\x00"}, "shelf"),
    ],
)
async def test_nul_in_a_body_string_is_422_and_changes_nothing(
    client: Client, admin: Tokens, make_book: MakeBook, tag: str, method: str, path: str, body: Any, field: str
) -> None:
    book_id = await make_book(title=f"Untouched {tag}", authors=(f"Author {tag}",))
    detail = (await client.get(f"/api/audiobooks/{book_id}")).json()
    url = path.format(book=book_id, author=detail["authors"][0]["id"])
    problem = assert_problem(await client.request(method, url, json=body, headers=bearer(admin)), 422)
    assert [error["field"] for error in problem["errors"]] == [field]
    assert (await client.get(f"/api/audiobooks/{book_id}")).json() == detail
    assert (await client.get(f"/api/audiobooks/{book_id}/reviews/")).json()["total"] == 0


async def test_a_string_is_not_a_number_in_a_body(client: Client, admin: Tokens, make_book: MakeBook) -> None:
    book_id = await make_book(duration=600)
    for path, body, field in [
        (f"/api/audiobooks/{book_id}/reviews/", {"rating": "5"}, "rating"),
        (f"/api/progress/{book_id}/", {"position_seconds": "12"}, "position_seconds"),
        (f"/api/audiobooks/{book_id}/bookmarks/", {"position_seconds": "1"}, "position_seconds"),
        (f"/api/progress/{book_id}/", {"position_seconds": 1, "is_completed": "true"}, "is_completed"),
    ]:
        problem = assert_problem(await client.post(path, json=body, headers=bearer(admin)), 422)
        assert problem["errors"][0]["field"] == field
    assert (await client.get(f"/api/audiobooks/{book_id}/reviews/")).json()["total"] == 0
    assert (await client.get(f"/api/progress/{book_id}/", headers=bearer(admin))).status_code == 404


async def test_an_integral_float_is_the_integer_it_names(client: Client, admin: Tokens, make_book: MakeBook) -> None:
    # JSON and the schema's `integer` read 5.0 as 5; a fraction stays wrong.
    book_id = await make_book(duration=600)
    url = f"/api/audiobooks/{book_id}/reviews/"
    problem = assert_problem(await client.post(url, json={"rating": 4.5}, headers=bearer(admin)), 422)
    assert problem["errors"][0]["field"] == "rating"
    created = await client.post(url, json={"rating": 5.0, "review_text": "Whole."}, headers=bearer(admin))
    assert created.status_code == 201, created.text
    assert created.json()["rating"] == 5


async def test_names_longer_than_their_column_are_422(client: Client, admin: Tokens, make_book: MakeBook) -> None:
    book_id = await make_book()
    url = f"/api/audiobooks/{book_id}/"
    for body, field in [({"genres": ["g" * 101]}, "genres[0]"), ({"authors": ["a" * 256]}, "authors[0]")]:
        problem = assert_problem(await client.patch(url, json=body, headers=bearer(admin)), 422)
        assert problem["errors"][0]["field"] == field
    edited = await client.patch(url, json={"genres": ["g" * 100]}, headers=bearer(admin))
    assert edited.status_code == 200, edited.text
    assert [genre["name"] for genre in edited.json()["genres"]] == ["g" * 100]


async def test_a_body_that_is_not_utf8_json_is_400(client: Client) -> None:
    for content in [
        b'{"username_or_email": "demo\xfflistener", "password": "x"}',
        b"\xff\xfe",
        b'{"username_or_email": ',
    ]:
        response = await client.post("/api/auth/login/", content=content, headers={"Content-Type": "application/json"})
        assert assert_problem(response, 400)["type"].endswith("/malformed-body")


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_nesting_is_measured_outside_strings() -> None:
    assert not nests_deeper_than(nested(MAX_JSON_DEPTH).encode(), MAX_JSON_DEPTH)
    assert nests_deeper_than(nested(MAX_JSON_DEPTH + 1).encode(), MAX_JSON_DEPTH)
    assert nests_deeper_than(('{"a": ' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1)).encode(), 32)
    assert not nests_deeper_than(('["[[[[\\"[[[[", ' + nested(MAX_JSON_DEPTH - 1) + "]").encode(), MAX_JSON_DEPTH)


async def test_a_body_nested_past_the_limit_is_400(client: Client) -> None:
    for content in [
        nested(1000),
        f'{{"username_or_email": {nested(1000)}, "password": "x"}}',
        f'{{"username_or_email": "x", "password": "x", "more": {nested(MAX_JSON_DEPTH + 1)}}}',
        f'{{"a": "[[[[ brackets in a string do not count ]]]]", "b": {nested(MAX_JSON_DEPTH + 1)}}}',
    ]:
        response = await client.post(
            "/api/auth/login/", content=content.encode(), headers={"Content-Type": "application/json"}
        )
        assert f"more than {MAX_JSON_DEPTH} levels" in assert_problem(response, 400)["detail"]
    unbalanced = await client.post(
        "/api/auth/login/", content=b"[" * 100_000, headers={"Content-Type": "application/json"}
    )
    assert_problem(unbalanced, 400, 422)


async def test_a_body_over_the_size_limit_is_413_before_it_is_parsed(client: Client, settings: Settings) -> None:
    padding = "x" * settings.max_body_bytes
    response = await client.post(
        "/api/auth/login/",
        json={"username_or_email": padding, "password": "x"},
        headers={"Content-Type": "application/json"},
    )
    assert "body" in assert_problem(response, 413)["detail"].lower()


LIST_ROUTES = [
    "/api/audiobooks/",
    "/api/audiobooks/search/",
    "/api/authors/",
    "/api/narrators/",
    "/api/audiobooks/{book}/reviews/",
    "/api/library/",
    "/api/library/favorites/",
    "/api/library/currently-listening/",
    "/api/library/history/",
    "/api/listening/current/",
    "/api/listening/history/",
    "/api/listening/completed/",
]


@pytest.mark.search
async def test_every_list_ends_at_the_window(client: Client, admin: Tokens, make_book: MakeBook) -> None:
    book_id = await make_book()
    for template in LIST_ROUTES:
        path = template.format(book=book_id)
        last = await client.get(path, params={"offset": MAX_RESULT_WINDOW - 20, "limit": 20}, headers=bearer(admin))
        assert last.status_code == 200, (path, last.text)
        assert (last.json()["items"], last.json()["offset"]) == ([], MAX_RESULT_WINDOW - 20)
        for params in [
            {"offset": MAX_RESULT_WINDOW - 19, "limit": 20},
            {"offset": MAX_RESULT_WINDOW},
            {"offset": "1000000000"},
            {"offset": PAST_INT64},
            {"offset": "-1"},
            {"limit": "101"},
        ]:
            assert_problem(await client.get(path, params=params, headers=bearer(admin)), 422)
        past = await client.get(path, params={"offset": MAX_RESULT_WINDOW - 19, "limit": 20}, headers=bearer(admin))
        assert "Narrow the query" in assert_problem(past, 422)["detail"]


@pytest.mark.search
async def test_totals_stay_exact_at_the_end_of_the_window(client: Client, make_book: MakeBook, tag: str) -> None:
    books = [await make_book(title=f"Window {tag} {n}", genres=(f"Genre {tag}",)) for n in range(3)]
    deepest = {"genre": f"genre-{tag}", "offset": MAX_RESULT_WINDOW - 1, "limit": 1}
    listed = await client.get("/api/audiobooks/", params=deepest)
    assert (listed.status_code, listed.json()["total"], listed.json()["items"]) == (200, len(books), [])
    await wait_for(client, lambda body: body["total"] == len(books), genre=f"genre-{tag}")  # indexing is async
    searched = await client.get("/api/audiobooks/search/", params={**deepest, "facets": "genres"})
    assert searched.status_code == 200, searched.text
    assert (searched.json()["total"], searched.json()["items"]) == (len(books), [])
    assert searched.json()["facets"]["genres"] == {f"genre-{tag}": len(books)}


@pytest.mark.search
async def test_the_process_survives_the_reported_search(client: Client) -> None:
    assert_problem(await client.get("/api/audiobooks/search/", params={"offset": "1000000000"}), 422)
    assert (await client.get("/api/audiobooks/search/", params={"q": "anything"})).status_code == 200


async def test_the_openapi_document_states_the_bounds(client: Client) -> None:
    document = (await client.get("/api/schema/openapi.json")).json()
    detail = {p["name"]: p["schema"] for p in document["paths"]["/api/audiobooks/{audiobook_id}"]["get"]["parameters"]}
    assert (detail["audiobook_id"]["minimum"], detail["audiobook_id"]["maximum"]) == (1, 2**63 - 1)
    listing = {p["name"]: p for p in document["paths"]["/api/audiobooks"]["get"]["parameters"]}
    assert listing["offset"]["schema"]["maximum"] == MAX_RESULT_WINDOW - 1
    assert listing["limit"]["schema"]["maximum"] == 100
    assert listing["author"]["schema"]["maximum"] == 2**63 - 1
    assert listing["language"]["schema"]["pattern"] == QUERY_TEXT_PATTERN


async def upload(client: Client, tokens: Tokens, audio: bytes, fields: dict[str, Any]) -> Any:
    files = {"audio": ("a.mp3", audio, "application/octet-stream")}
    return await client.post("/api/audiobooks/", headers=bearer(tokens), data=fields, files=files)


async def test_upload_form_fields_are_bounded_too(client: Client, admin: Tokens, tmp_path: Any) -> None:
    audio = mp3_with_chapters(tmp_path).path.read_bytes()
    for fields, field in [
        ({"title": "Nul\x00Title"}, "title"),
        ({"authors": "Mary\x00Shelley"}, "authors[0]"),
        ({"publisher": "Pub\x00"}, "publisher"),
        ({"series_position": "1e999"}, "series_position"),
        ({"series_position": PAST_INT64 + "0" * 400}, "series_position"),
    ]:
        problem = assert_problem(await upload(client, admin, audio, fields), 422)
        assert problem["errors"][0]["field"] == field, problem
    raw_form = (
        b'--b\r\nContent-Disposition: form-data; name="title"\r\n\r\nbad \xff byte\r\n'
        b'--b\r\nContent-Disposition: form-data; name="audio"; filename="a.mp3"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + audio + b"\r\n--b--\r\n"
    )
    response = await client.post(
        "/api/audiobooks/",
        content=raw_form,
        headers={**bearer(admin), "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code < 500, response.text


async def test_picture_form_refuses_text_and_nul_names(client: Client, admin: Tokens) -> None:
    for kwargs in [
        {"data": {"picture": "not a file"}},
        {"files": {"picture": ("me\x00.png", b"\x89PNG\r\n", "image/png")}},
        {"files": {"picture\x00": ("me.png", b"\x89PNG\r\n", "image/png")}},
    ]:
        response = await client.put("/api/users/me/picture/", headers=bearer(admin), **kwargs)
        assert_problem(response, 400, 413, 422)


async def test_an_asset_name_no_file_can_have_is_404(client: AsyncTestClient[Litestar]) -> None:
    # A name past the file system's 255 characters, a file taken for a folder, a NUL: 500 before.
    for name in ("a" * 300, "swagger-ui.css/more", "a%00b", "a/" * 3000):
        for prefix in ("/api/schema/assets/", "/static/player/"):
            answer = await client.get(prefix + name)
            assert answer.status_code == 404, (prefix, name[:20], answer.status_code)

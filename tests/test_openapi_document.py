"""The OpenAPI document states what the server does: auth, error media types, stream, forms, facets."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

Client = AsyncTestClient[Litestar]
PROBLEM = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/ProblemBody"}
METHODS = {"get", "put", "post", "patch", "delete", "head"}


@pytest.fixture
async def document(client: Client) -> dict[str, Any]:
    response = await client.get("/api/schema/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def problem_entry(operation: dict[str, Any], status: str) -> dict[str, Any]:
    entry: dict[str, Any] = operation["responses"][status]["content"][PROBLEM]
    return entry


async def test_protected_routes_document_401_and_guarded_ones_403(document: dict[str, Any]) -> None:
    assert document["security"] == [{"BearerToken": []}]
    me = document["paths"]["/api/users/me"]["get"]
    assert "security" not in me  # the document-wide bearer requirement applies
    assert problem_entry(me, "401")["schema"] == PROBLEM_REF
    reindex = document["paths"]["/api/admin/search/reindex"]["post"]
    assert problem_entry(reindex, "401")["schema"] == PROBLEM_REF
    assert problem_entry(reindex, "403")["schema"] == PROBLEM_REF
    role = document["paths"]["/api/admin/users/{user_id}/role"]["put"]
    assert {"401", "403"} <= set(role["responses"])


async def test_public_routes_need_no_credentials_and_never_answer_401(document: dict[str, Any]) -> None:
    for path, method in [
        ("/api/health", "get"),
        ("/api/audiobooks", "get"),
        ("/api/audiobooks/{audiobook_id}", "get"),
        ("/api/audiobooks/search", "get"),
        ("/api/auth/login", "post"),
        ("/api/genres", "get"),
    ]:
        operation = document["paths"][path][method]
        assert operation["security"] == [], path
    assert "401" not in document["paths"]["/api/audiobooks"]["get"]["responses"]


async def test_every_error_response_is_problem_json(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert set(response["content"]) == {PROBLEM}, (method, path, status)
                assert response["content"][PROBLEM]["schema"] == PROBLEM_REF, (method, path, status)


async def test_validation_errors_are_400_and_422_problems(document: dict[str, Any]) -> None:
    register = document["paths"]["/api/auth/register"]["post"]
    assert problem_entry(register, "400")["schema"] == PROBLEM_REF
    assert problem_entry(register, "422")["schema"] == PROBLEM_REF


async def test_routes_with_a_body_document_its_size_limit_and_idle_timeout(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        if "requestBody" in operation:
            assert problem_entry(operation, "413")["schema"] == PROBLEM_REF, (method, path)
            assert problem_entry(operation, "408")["schema"] == PROBLEM_REF, (method, path)


async def test_no_content_responses_have_no_body(document: dict[str, Any]) -> None:
    for path, method in [
        ("/api/audiobooks/{audiobook_id}", "delete"),
        ("/api/reviews/{review_id}", "delete"),
        ("/api/auth/logout", "post"),
    ]:
        assert "content" not in document["paths"][path][method]["responses"]["204"], path


async def test_stream_documents_audio_ranges_and_their_headers(document: dict[str, Any]) -> None:
    item = document["paths"]["/api/audiobooks/{audiobook_id}/stream"]
    for method in ("get", "head"):
        operation = item[method]
        responses = operation["responses"]
        assert set(responses["200"]["content"]) == {"audio/*"}
        assert set(responses["206"]["content"]) == {"audio/*", "multipart/byteranges"}
        assert {"Content-Range", "Accept-Ranges", "ETag"} <= set(responses["206"]["headers"])
        assert {"Accept-Ranges", "ETag"} <= set(responses["200"]["headers"])
        assert responses["416"]["headers"]["Content-Range"]["required"] is True
        assert set(responses["416"]["content"]) == {PROBLEM}
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert {"Range", "If-Range"} <= headers
        # A bearer token or, with none, the signed `token` query parameter.
        assert operation["security"] == [{"BearerToken": []}, {}]


async def test_multipart_fields_are_named_as_the_server_reads_them(document: dict[str, Any]) -> None:
    picture = document["paths"]["/api/users/me/picture"]["put"]["requestBody"]["content"]["multipart/form-data"]
    assert picture["schema"]["required"] == ["picture"]
    assert picture["schema"]["properties"]["picture"]["format"] == "binary"
    upload = document["paths"]["/api/audiobooks"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["required"] == ["audio"]
    assert {"audio", "cover", "title", "authors"} <= set(upload["schema"]["properties"])
    assert upload["schema"]["additionalProperties"] is False


async def test_search_facets_are_enumerated(document: dict[str, Any], client: Client) -> None:
    search = document["paths"]["/api/audiobooks/search"]["get"]
    [facets] = [p for p in search["parameters"] if p["name"] == "facets"]
    pattern = facets["schema"]["pattern"]
    for name in ("genres", "languages", "authors", "narrators", "duration"):
        assert name in pattern
    refused = await client.get("/api/audiobooks/search/", params={"facets": "genres, price"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "facets"


async def test_request_bodies_refuse_unknown_fields_and_say_so(document: dict[str, Any], client: Client) -> None:
    schemas = document["components"]["schemas"]
    for name in ("RegisterRequest", "LoginRequest", "AudiobookUpdate", "ProgressWrite", "ReviewCreate"):
        assert schemas[name]["additionalProperties"] is False, name
    # Constraints of list items are stated as the server checks them.
    assert schemas["AudiobookUpdate"]["properties"]["genres"]["items"]["minLength"] == 1
    response = await client.post(
        "/api/auth/login/", json={"username_or_email": "someone", "password": "x", "remember": True}
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)


async def test_options_lists_every_method_of_the_path(client: Client) -> None:
    response = await client.options("/api/audiobooks/")
    assert response.status_code == 204
    assert set(response.headers["allow"].split(", ")) == {"GET", "POST", "OPTIONS"}
    guarded = await client.options("/api/admin/search/status/")
    assert guarded.status_code == 204

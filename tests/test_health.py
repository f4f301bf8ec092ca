"""Liveness, readiness (and what it names when a dependency is down), docs and the OpenAPI document."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audioverse.app import create_app, request_logging_config
from audioverse.config import Settings
from tests.services import TEST_SECRET_KEY, free_port


async def test_health_answers_with_and_without_trailing_slash(client: AsyncTestClient[Litestar]) -> None:
    for path in ("/api/health", "/api/health/"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


async def test_ready_reports_each_dependency(client: AsyncTestClient[Litestar], profile: str) -> None:
    response = await client.get("/api/ready/")
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    expected = {"database", "storage", "search"} | ({"broker"} if profile == "production" else set())
    assert checks == dict.fromkeys(expected, "ok")


async def _ready_problem(settings: Settings) -> dict[str, object]:
    async with AsyncTestClient(create_app(settings)) as client:
        response = await client.get("/api/ready")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    return body


async def test_ready_names_an_unreachable_database(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere",
        migrate_on_startup=False,
        seed_demo_on_startup=False,
        secret_key=TEST_SECRET_KEY,
        readiness_timeout_seconds=1.0,
    )
    body = await _ready_problem(settings)
    assert body["detail"] == "unreachable: database"
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["storage"] == "ok"
    assert checks["database"] != "ok"


async def test_ready_names_an_unreachable_broker_and_storage(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("storage cannot live under a file")
    settings = Settings(
        data_dir=tmp_path,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        storage_local_dir=blocker / "storage",
        seed_demo_on_startup=False,
        readiness_timeout_seconds=1.0,
    )
    body = await _ready_problem(settings)
    assert body["detail"] == "unreachable: broker, storage"
    assert body["status"] == 503
    assert body["title"] == "Service Unavailable"


async def test_docs_render(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/api/docs", follow_redirects=True)
    assert response.status_code == 200
    assert "swagger-ui" in response.text.lower()
    assert "SwaggerUIBundle" in response.text
    assert "AudioVerse API" in response.text


async def test_openapi_lists_every_route(client: AsyncTestClient[Litestar], app: Litestar) -> None:
    response = await client.get("/api/schema/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    documented = set(document["paths"])
    served = {
        re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
        for route in app.routes
        if not route.path.startswith("/api/schema") and route.path != "/api/docs"
    }
    assert served
    assert served <= documented
    ready = document["paths"]["/api/ready"]["get"]["responses"]
    assert "503" in ready


async def test_openapi_documents_the_shared_catalog_filters_on_list_and_search(
    client: AsyncTestClient[Litestar],
) -> None:
    paths = (await client.get("/api/schema/openapi.json")).json()["paths"]
    filters = {"genre", "author", "narrator", "language", "duration_min", "duration_max", "min_rating"}
    filters |= {"released_after", "released_before"}
    listing = {parameter["name"] for parameter in paths["/api/audiobooks"]["get"]["parameters"]}
    searching = {parameter["name"] for parameter in paths["/api/audiobooks/search"]["get"]["parameters"]}
    assert listing == filters | {"sort", "limit", "offset"}
    assert searching == filters | {"q", "sort", "facets", "limit", "offset"}


async def test_unknown_route_is_problem_json(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/api/no-such-thing/")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["title"] == "Not Found"


async def test_wrong_method_is_problem_json(client: AsyncTestClient[Litestar]) -> None:
    response = await client.delete("/api/health")
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_cors_allows_configured_origin(settings: Settings) -> None:
    app = create_app(msgspec.structs.replace(settings, cors_allow_origins=["https://player.example"]))
    async with AsyncTestClient(app) as client:
        allowed = await client.get("/api/health", headers={"Origin": "https://player.example"})
        other = await client.get("/api/health", headers={"Origin": "https://evil.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://player.example"
    assert "access-control-allow-origin" not in other.headers


def test_request_logging_never_includes_bodies_or_credentials() -> None:
    config = request_logging_config()
    assert "body" not in config.request_log_fields
    assert "body" not in config.response_log_fields
    assert {"path", "method"} <= set(config.request_log_fields)
    assert "Authorization" in config.request_headers_to_obfuscate

"""Liveness, readiness (and what it names when a dependency is down), docs and the OpenAPI document."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audioverse.app import create_app
from audioverse.config import Settings
from audioverse.storage import S3Storage
from audioverse.web.admin import ADMIN_PATH
from audioverse.web.player import ASSETS_PATH, CLIENT_ROUTES
from tests.services import TEST_SECRET_KEY, MeilisearchServer, SmtpServer, free_port, moto_s3_settings, unique_name
from tests.serving import audioverse_run


async def test_health_answers_with_and_without_trailing_slash(client: AsyncTestClient[Litestar]) -> None:
    for path in ("/api/health", "/api/health/"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


async def test_ready_reports_each_dependency(client: AsyncTestClient[Litestar], profile: str) -> None:
    response = await client.get("/api/ready/")
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    expected = {"database", "storage", "search"} | ({"broker", "email"} if profile == "production" else set())
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
        # A refused connection answers at once; the bound only keeps a loaded machine from reading as a timeout.
        readiness_timeout_seconds=10.0,
    )
    body = await _ready_problem(settings)
    # The database is named first, with why. The other probes are not this test's claim: once, in a full
    # suite run on a loaded 2-core machine, the local storage probe's file writes took over 10 s.
    assert isinstance(body["detail"], str)
    assert body["detail"].startswith("database: unreachable (ConnectionRefusedError)")
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["database"] == "unreachable (ConnectionRefusedError)"
    assert checks.keys() == {"database", "storage", "search"}


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
    assert body["detail"] == "broker: unreachable (ConnectionError); storage: unreachable (NotADirectoryError)"
    assert body["status"] == 503
    assert body["title"] == "Service Unavailable"


def _ready_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """The embedded profile, but with whichever real services ``overrides`` name."""
    return Settings(data_dir=tmp_path, seed_demo_on_startup=False, readiness_timeout_seconds=2.0, **overrides)


def _meilisearch_settings(tmp_path: Path, meilisearch: MeilisearchServer, api_key: str | None) -> Settings:
    return _ready_settings(
        tmp_path,
        search_backend="meilisearch",
        meilisearch_url=meilisearch.url,
        meilisearch_api_key=api_key,
        search_index=unique_name("books"),
    )


@pytest.mark.parametrize(
    ("api_key", "reason"),
    [
        ("not-the-master-key", "the Meilisearch API key was refused (403 invalid_api_key)"),
        (None, "Meilisearch requires an API key and none is configured (401 missing_authorization_header)"),
    ],
    ids=["wrong key", "missing key"],
)
async def test_ready_and_search_answer_503_naming_a_refused_meilisearch_key(
    tmp_path: Path, meilisearch: MeilisearchServer, api_key: str | None, reason: str
) -> None:
    async with AsyncTestClient(create_app(_meilisearch_settings(tmp_path, meilisearch, api_key))) as client:
        ready = await client.get("/api/ready")
        searched = await client.get("/api/audiobooks/search", params={"q": "dune"})
        suggested = await client.get("/api/search/suggest", params={"q": "du"})

    assert ready.status_code == 503
    assert ready.json()["detail"] == f"search: {reason}"
    assert ready.json()["checks"]["search"] == reason
    assert ready.json()["checks"]["database"] == "ok"
    for response in (searched, suggested):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["retry-after"] == "5"


def test_startup_says_in_one_line_that_the_meilisearch_key_is_refused(
    tmp_path: Path, meilisearch: MeilisearchServer
) -> None:
    with audioverse_run(
        tmp_path,
        search_backend="meilisearch",
        meilisearch_url=meilisearch.url,
        meilisearch_api_key="not-the-master-key",
        search_index=unique_name("books"),
    ) as server:
        ready = httpx.get(f"{server.url}/api/ready", timeout=10)
        log = server.log()

    assert ready.status_code == 503
    assert "Traceback" not in log
    not_ready = [line for line in log.splitlines() if "not ready" in line]
    assert len(not_ready) == 1, log
    assert "search: the Meilisearch API key was refused (403 invalid_api_key)" in not_ready[0]


async def test_ready_with_the_right_meilisearch_key(tmp_path: Path, meilisearch: MeilisearchServer) -> None:
    settings = _meilisearch_settings(tmp_path, meilisearch, meilisearch.master_key)
    async with AsyncTestClient(create_app(settings)) as client:
        ready = await client.get("/api/ready")
        searched = await client.get("/api/audiobooks/search", params={"q": "dune"})
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["search"] == "ok"
    assert searched.status_code == 200, searched.text


async def test_ready_names_a_missing_s3_bucket(tmp_path: Path, s3_endpoint: str) -> None:
    bucket = unique_name("absent").replace("_", "-")
    settings = _ready_settings(tmp_path, **moto_s3_settings(s3_endpoint, bucket))
    body = await _ready_problem(settings)
    assert body["detail"] == f"storage: the S3 bucket '{bucket}' does not exist (404)"

    await S3Storage(
        bucket, endpoint_url=s3_endpoint, region="us-east-1", access_key="test", secret_key="test"
    ).ensure_bucket()
    async with AsyncTestClient(create_app(settings)) as client:
        ready = await client.get("/api/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["storage"] == "ok"


async def test_ready_checks_the_smtp_server_when_email_goes_by_smtp(tmp_path: Path, smtp_server: SmtpServer) -> None:
    answering = _ready_settings(tmp_path, email_backend="smtp", smtp_host=smtp_server.host, smtp_port=smtp_server.port)
    async with AsyncTestClient(create_app(answering)) as client:
        ready = await client.get("/api/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["email"] == "ok"

    down = msgspec.structs.replace(answering, smtp_port=free_port())
    body = await _ready_problem(down)
    assert body["detail"] == "email: the SMTP server does not answer (ConnectionRefusedError)"


async def test_docs_render_from_this_apps_own_files_under_a_policy_with_no_inline_code(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get("/api/docs", follow_redirects=True)
    assert response.status_code == 200
    assert "<title>AudioVerse API</title>" in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert "<script>" not in response.text  # only script files, which the policy allows
    assert "://" not in response.text  # no CDN: the docs work offline
    assets = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert {asset.rsplit("/", 1)[-1] for asset in assets} >= {"swagger-ui-bundle.js", "swagger-init.js"}
    for asset in assets:
        served = await client.get(asset)
        assert served.status_code == 200, asset
        assert served.headers["content-type"].split(";")[0] in {"text/javascript", "text/css", "image/png"}, asset
    starter = await client.get("/api/schema/assets/swagger-init.js")
    assert "container.dataset.schemaUrl" in starter.text
    assert 'data-schema-url="/api/schema/openapi.json"' in response.text


async def test_openapi_lists_every_route(client: AsyncTestClient[Litestar], app: Litestar) -> None:
    response = await client.get("/api/schema/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    documented = set(document["paths"])
    served = {
        re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
        for route in app.routes
        if not route.path.startswith(("/api/schema", ADMIN_PATH, ASSETS_PATH))
        and route.path not in {"/api/docs", *CLIENT_ROUTES, "/books/{book_id:int}"}
    }
    assert len(served) > 50
    assert served <= documented
    # The web player's pages and the admin are HTML for people, not part of the contract.
    assert not any(path.startswith((ADMIN_PATH, ASSETS_PATH)) or path in CLIENT_ROUTES for path in documented)
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

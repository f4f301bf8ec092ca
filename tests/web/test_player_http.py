"""The listener app over HTTP: its page on every client route, cached assets, the security policy, API 404s."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audioverse.app import create_app
from audioverse.config import Settings
from audioverse.web.player import STATIC_DIR
from tests.services import TEST_HASHING, TEST_SECRET_KEY, free_port

CLIENT_PATHS = [
    "/",
    "/search?q=dickens",
    "/books/1",
    "/library",
    "/favorites",
    "/history",
    "/profile",
    "/login",
    "/register",
    "/verify-email?token=abc",
    "/forgot-password",
    "/reset-password?token=abc",
]


class _InlineCode(HTMLParser):
    """Collects what a policy without 'unsafe-inline' would block: inline scripts, style blocks and attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.blocked.append("inline <script>")
        if tag == "style":
            self.blocked.append("<style> block")
        if "style" in names:
            self.blocked.append(f"style= on <{tag}>")
        self.blocked += [f"{name}= handler on <{tag}>" for name in names if name.startswith("on")]


@pytest.mark.parametrize("path", CLIENT_PATHS)
async def test_every_client_route_answers_the_app_page(client: AsyncTestClient[Litestar], path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-disposition"] == 'inline; filename="index.html"'
    head = await client.head(path)
    assert (head.status_code, head.headers["etag"]) == (200, response.headers["etag"])
    assert '<script type="module" src="/static/player/js/app.js"></script>' in response.text
    assert '<html lang="en">' in response.text


async def test_the_page_and_its_assets_revalidate_by_etag(client: AsyncTestClient[Litestar]) -> None:
    for path, media_type in [
        ("/", "text/html"),
        ("/static/player/js/app.js", "text/javascript"),
        ("/static/player/css/app.css", "text/css"),
    ]:
        first = await client.get(path)
        assert first.status_code == 200, path
        assert first.headers["content-type"].startswith(media_type), path
        assert first.headers["cache-control"] == "no-cache", path
        etag = first.headers["etag"]
        again = await client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304, path
        assert again.content == b""
        changed = await client.get(path, headers={"If-None-Match": '"something-else"'})
        assert changed.status_code == 200, path
        assert changed.content == first.content


async def test_a_missing_asset_is_a_404(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/static/player/js/nothing-here.js")).status_code == 404
    assert (await client.get("/static/player/../../config.py")).status_code == 404


async def test_every_page_carries_a_policy_that_allows_no_inline_code(client: AsyncTestClient[Litestar]) -> None:
    for path in ["/", "/books/1", "/verify-email?token=abc", "/api/health"]:
        policy = (await client.get(path)).headers["content-security-policy"]
        assert "'unsafe-inline'" not in policy
        assert "'unsafe-eval'" not in policy
        assert "default-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy


def test_the_page_holds_no_code_or_style_the_policy_would_block() -> None:
    parser = _InlineCode()
    parser.feed((STATIC_DIR / "index.html").read_text())
    assert parser.blocked == []
    for script in (STATIC_DIR / "js").glob("*.js"):
        source = script.read_text()
        # Styles are set through CSSOM (element.style...), which the policy allows; an attribute is not.
        assert not re.search(r"setAttribute\(\s*[\"']style", source), script.name
        assert "eval(" not in source, script.name


async def test_an_unknown_api_path_is_still_a_problem_json_404(client: AsyncTestClient[Litestar]) -> None:
    for path in ["/api/nowhere", "/api/audiobooks/1/nothing", "/api"]:
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/problem+json"), path
    docs = await client.get("/api/docs", follow_redirects=True)
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_the_policy_allows_media_and_images_from_the_s3_endpoint_and_the_cdn(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "cdn.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    # Nothing listens there: the policy is built from the settings, not from a connection.
    endpoint = f"http://127.0.0.1:{free_port()}"
    settings = Settings(
        data_dir=tmp_path,
        seed_demo_on_startup=False,
        secret_key=TEST_SECRET_KEY,
        password_hash_profile=TEST_HASHING,
        storage_backend="s3",
        s3_endpoint_url=f"{endpoint}/",
        s3_region="us-east-1",
        s3_access_key_id="test",
        s3_secret_access_key="test",
        s3_cdn_url="https://cdn.audioverse.example/books/",
        s3_cdn_key_pair_id="K2JCJMDEHXQW5F",
        s3_cdn_private_key_file=key_file,
        readiness_timeout_seconds=0.5,
    )
    async with AsyncTestClient(create_app(settings)) as client:
        policy = (await client.get("/")).headers["content-security-policy"]
    directives = {part.split()[0]: part.split()[1:] for part in policy.split("; ")}
    for directive in ("media-src", "img-src"):
        assert endpoint in directives[directive], policy
        assert "https://cdn.audioverse.example" in directives[directive], policy
    assert "'unsafe-inline'" not in policy


async def test_with_local_storage_media_comes_only_from_this_origin(client: AsyncTestClient[Litestar]) -> None:
    policy = (await client.get("/")).headers["content-security-policy"]
    directives = {part.split()[0]: part.split()[1:] for part in policy.split("; ")}
    assert directives["media-src"] == ["'self'"]

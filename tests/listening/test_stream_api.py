"""The stream route: who may stream (bearer or signed token, for that book only) and what bytes come back."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audioverse.app import create_app
from audioverse.config import Settings
from audioverse.signing import sign_stream_token
from tests.accounts.test_auth_flow import bearer
from tests.catalog.fixtures import MakeBook, Tokens

Client = AsyncTestClient[Litestar]
AUDIO = os.urandom(100_003)


async def stream_url(client: Client, tokens: Tokens, book_id: int) -> str:
    url: str = (await client.get(f"/api/audiobooks/{book_id}/playback/", headers=bearer(tokens))).json()["stream_url"]
    return url


async def test_a_signed_url_streams_without_headers(client: Client, make_book: MakeBook, uploader: Tokens) -> None:
    book_id = await make_book(title="Streamed", audio=AUDIO)
    url = await stream_url(client, uploader, book_id)
    whole = await client.get(url)
    assert whole.status_code == 200
    assert whole.content == AUDIO
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "audio/mpeg"
    part = await client.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.content == AUDIO[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(AUDIO)}"
    tail = await client.get(url, headers={"Range": "bytes=-10"})
    assert tail.content == AUDIO[-10:]
    unsatisfiable = await client.get(url, headers={"Range": "bytes=200000-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{len(AUDIO)}"
    head = await client.head(url, headers={"Range": "bytes=0-99"})
    assert head.status_code == 206
    assert head.headers["content-length"] == "100"
    assert head.content == b""
    cached = await client.get(url, headers={"If-None-Match": whole.headers["etag"]})
    assert cached.status_code == 304


async def test_bearer_tokens_stream_too(client: Client, make_book: MakeBook, uploader: Tokens) -> None:
    book_id = await make_book(title="Bearer streamed", audio=AUDIO)
    response = await client.get(
        f"/api/audiobooks/{book_id}/stream/", headers={**bearer(uploader), "Range": "bytes=5-9"}
    )
    assert response.status_code == 206
    assert response.content == AUDIO[5:10]


async def test_stream_tokens_open_one_book_and_expire(
    client: Client, make_book: MakeBook, uploader: Tokens, app: Litestar
) -> None:
    first = await make_book(title="First", audio=AUDIO)
    second = await make_book(title="Second", audio=AUDIO)
    url = await stream_url(client, uploader, first)
    token = url.split("token=")[1]
    assert (await client.get(f"/api/audiobooks/{second}/stream/?token={token}")).status_code == 403
    assert (await client.get(f"/api/audiobooks/{first}/stream/")).status_code == 401
    assert (await client.get(f"/api/audiobooks/{first}/stream/?token=forged")).status_code == 401
    expired = sign_stream_token(
        app.state.secret_key, uploader["user_id"], first, datetime.now(UTC) - timedelta(seconds=1)
    )
    response = await client.get(f"/api/audiobooks/{first}/stream/?token={expired}")
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    assert (await client.get("/api/audiobooks/987654321/stream/", headers=bearer(uploader))).status_code == 404


async def test_missing_audio_is_404(client: Client, make_book: MakeBook, uploader: Tokens) -> None:
    book_id = await make_book(title="No file")
    response = await client.get(f"/api/audiobooks/{book_id}/stream/", headers=bearer(uploader))
    assert response.status_code == 404


async def test_behind_nginx_the_app_hands_off_with_x_accel_redirect(
    settings: Settings, make_book: MakeBook, uploader: Tokens
) -> None:
    book_id = await make_book(title="Handed off", audio=AUDIO)
    handed = msgspec.structs.replace(settings, stream_accel_redirect_prefix="/protected-audio/")
    async with AsyncTestClient(create_app(handed)) as client:
        response = await client.get(f"/api/audiobooks/{book_id}/stream/", headers=bearer(uploader))
        detail = (await client.get(f"/api/audiobooks/{book_id}/")).json()
    assert response.status_code == 200
    assert response.headers["x-accel-redirect"].startswith("/protected-audio/audiobooks/")
    assert response.content == b""
    assert detail["mime_type"] == response.headers["content-type"].split(";")[0]


async def test_a_deleted_books_stream_url_stops_at_once(
    client: Client, make_book: MakeBook, uploader: Tokens, curator: Tokens
) -> None:
    # The book's storage key is kept between range requests; a deletion must reach the very next one.
    book_id = await make_book(title="Withdrawn", audio=AUDIO)
    url = await stream_url(client, uploader, book_id)
    assert (await client.get(url, headers={"Range": "bytes=0-9"})).status_code == 206
    assert (await client.delete(f"/api/audiobooks/{book_id}/", headers=bearer(curator))).status_code == 204
    response = await client.get(url, headers={"Range": "bytes=10-19"})
    assert response.status_code == 404
    assert response.json()["detail"] == f"No audiobook with id {book_id}."

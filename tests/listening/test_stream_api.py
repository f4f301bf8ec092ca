"""The stream route: who may stream (bearer or signed token, for that book only) and what bytes come back."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import anyio
import anyio.lowlevel
import msgspec
import pytest
from litestar import Litestar, Request
from litestar.response.base import ASGIResponse
from litestar.testing import AsyncTestClient
from litestar.types import Message

from audioverse import signing
from audioverse.app import create_app
from audioverse.config import Settings
from audioverse.listening.streaming import WATCHED_FROM_BYTES, AudioStream
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
    # The book is kept from here on; the token is still checked on every request.
    again = await client.get(f"/api/audiobooks/{book_id}/stream/", headers={**bearer(uploader), "Range": "bytes=0-1"})
    assert (again.status_code, again.content) == (206, AUDIO[:2])
    forged = await client.get(f"/api/audiobooks/{book_id}/stream/", headers={"Authorization": "Bearer forged"})
    assert forged.status_code == 401


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


async def test_a_kept_book_still_needs_a_token_for_it(client: Client, make_book: MakeBook, uploader: Tokens) -> None:
    # Once a book has streamed it is kept and no session is opened: the token checks must hold all the same.
    first = await make_book(title="Kept first", audio=AUDIO)
    second = await make_book(title="Kept second", audio=AUDIO)
    first_url, second_url = await stream_url(client, uploader, first), await stream_url(client, uploader, second)
    for url in (first_url, second_url):
        assert (await client.get(url, headers={"Range": "bytes=0-9"})).status_code == 206
    first_token = first_url.split("token=")[1]
    assert (await client.get(f"/api/audiobooks/{second}/stream/?token={first_token}")).status_code == 403
    assert (await client.get(f"/api/audiobooks/{second}/stream/")).status_code == 401
    assert (await client.get(f"/api/audiobooks/{second}/stream/?token=forged")).status_code == 401


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


async def test_a_stream_token_that_already_streamed_still_expires(
    client: Client, make_book: MakeBook, uploader: Tokens, app: Litestar, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A verified token is kept for the player's next range requests; its expiry must still hold.
    book_id = await make_book(title="Kept token", audio=AUDIO)
    expires = datetime.now(UTC) + timedelta(minutes=5)
    token = sign_stream_token(app.state.secret_key, uploader["user_id"], book_id, expires)
    url = f"/api/audiobooks/{book_id}/stream/?token={token}"
    assert (await client.get(url, headers={"Range": "bytes=0-9"})).status_code == 206
    monkeypatch.setattr(signing, "time", SimpleNamespace(time=expires.timestamp))
    response = await client.get(url, headers={"Range": "bytes=10-19"})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def audio_body(chunks: list[bytes], length: int, read: list[bytes]) -> ASGIResponse:
    """The stream route's response for a body of ``length`` bytes that storage yields as ``chunks``."""

    async def storage() -> AsyncIterator[bytes]:
        for chunk in chunks:
            read.append(chunk)
            yield chunk

    headers = {"content-length": str(length)}
    return AudioStream(storage(), length=length, media_type="audio/mpeg", headers=headers).to_asgi_response(
        None, cast("Request[Any, Any, Any]", None)
    )


async def test_a_short_body_ends_with_its_last_chunk() -> None:
    chunks = [b"a" * 10, b"b" * 10, b"c" * 5]
    read: list[bytes] = []
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def never_hangs_up() -> Message:
        raise AssertionError("a short body does not listen for the client")

    await audio_body(chunks, 25, read)({"type": "http"}, never_hangs_up, send)  # type: ignore[arg-type]
    bodies = [message for message in sent if message["type"] == "http.response.body"]
    assert [message["body"] for message in bodies] == chunks
    assert [message["more_body"] for message in bodies] == [True, True, False]


async def test_a_long_body_stops_reading_when_the_client_hangs_up() -> None:
    chunk = b"x" * (1024 * 1024)
    chunk_count = WATCHED_FROM_BYTES // len(chunk) * 4
    read: list[bytes] = []
    hung_up = anyio.Event()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and len(read) == 2:
            hung_up.set()
        await anyio.lowlevel.checkpoint()

    async def receive() -> Message:
        await hung_up.wait()
        return {"type": "http.disconnect"}

    await audio_body([chunk] * chunk_count, len(chunk) * chunk_count, read)({"type": "http"}, receive, send)  # type: ignore[arg-type]
    assert len(read) < chunk_count


async def test_a_body_storage_ends_early_is_closed_short() -> None:
    # The server sees the short body against Content-Length and drops the connection, as it would
    # for a file truncated after its size was read.
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    await audio_body([b"a" * 10], 25, [])({"type": "http"}, receive, send)  # type: ignore[arg-type]
    assert [(message.get("body"), message.get("more_body")) for message in sent[1:]] == [
        (b"a" * 10, True),
        (b"", False),
    ]

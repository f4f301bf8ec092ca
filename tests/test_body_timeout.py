"""A client that stops sending its request body is dropped with 408 while others are served (real server)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from audioverse.config import Settings
from tests.serving import Server, audioverse_run

IDLE_SECONDS = 1.0
LOGIN = {"username_or_email": "nobody", "password": "not a real password"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with audioverse_run(tmp_path_factory.mktemp("body-timeout"), request_body_idle_seconds=str(IDLE_SECONDS)) as run:
        yield run


def start_login(server: Server, body: bytes, declared_length: int) -> socket.socket:
    """A login request whose headers promise ``declared_length`` body bytes, of which ``body`` is sent."""
    connection = socket.create_connection((server.host, server.port), timeout=30)
    head = (
        f"POST /api/auth/login/ HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared_length}\r\n\r\n"
    )
    connection.sendall(head.encode() + body)
    return connection


def read_until_closed(connection: socket.socket) -> bytes:
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    connection.close()
    return received


def response_parts(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return status_line, headers, body


@pytest.mark.parametrize("sent", [b"", b'{"username_or_email": "nob'], ids=["no body yet", "half a body"])
def test_a_stalled_body_is_dropped_with_408_while_others_are_served(server: Server, sent: bytes) -> None:
    body = json.dumps(LOGIN).encode()
    stalled = start_login(server, sent, declared_length=len(body))
    started = time.monotonic()

    served = httpx.get(f"{server.url}/api/audiobooks/", params={"limit": 1}, timeout=5)
    assert served.status_code == 200
    raw = read_until_closed(stalled)  # the server closes the connection after its answer
    waited = time.monotonic() - started

    status_line, headers, problem = response_parts(raw)
    assert status_line == "HTTP/1.1 408 Request Timeout"
    assert headers["content-type"].startswith("application/problem+json")
    assert headers["connection"] == "close"
    assert json.loads(problem[: int(headers["content-length"])])["status"] == 408
    assert IDLE_SECONDS <= waited < IDLE_SECONDS + 10


def test_a_body_that_keeps_coming_is_not_cut_short(server: Server) -> None:
    body = json.dumps(LOGIN).encode()
    pieces = [body[:10], body[10:20], body[20:]]
    connection = start_login(server, pieces[0], declared_length=len(body))
    # Each pause is shorter than the idle time, together they are longer: the bound is per wait, not total.
    for piece in pieces[1:]:
        time.sleep(IDLE_SECONDS * 0.6)
        connection.sendall(piece)
    status_line, _, answer = response_parts(connection.recv(65536))
    connection.close()

    assert status_line == "HTTP/1.1 401 Unauthorized", answer


def test_the_idle_time_is_a_setting() -> None:
    assert Settings().request_body_idle_seconds == 60.0
    assert Settings.from_env({"AUDIOVERSE_REQUEST_BODY_IDLE_SECONDS": "2.5"}).request_body_idle_seconds == 2.5

"""Benchmark: how fast any Python HTTP server can serve 1 MiB ranges, beside nginx: the ceiling under the app.

Run: uv run python -m bench.stream_ceiling [--mib 200] [--ranges 900] [--rounds 3].
Writes bench/results/stream_ceiling.json.

``bench/stream_throughput.py`` measures the app serving ranges itself at a fraction of nginx's rate
(issue 16 asks for 0.6). This asks what the floor of that gap is, with no framework at all: a bare
asyncio protocol (``serve`` below) that parses a request's ``Range`` and answers 206 with the bytes,
in two ways,

- ``copy``: ``os.pread`` the range and ``transport.write`` it, as every ASGI server does with a body
  (uvicorn included: ASGI hands it bytes);
- ``sendfile``: ``loop.sendfile``, the kernel moving the page cache to the socket as nginx does,
  which no ASGI server in our stack offers (uvicorn has no zero-copy send),

and then the ASGI server the app runs on, uvicorn (uvloop and httptools, as ``audioverse run``), with
a ten-line ASGI app (``asgi_ranges``) that does nothing but read the range and send it:

- ``uvicorn_chunked``: in chunks of the app's default ``AUDIOVERSE_STREAM_CHUNK_BYTES`` (256 KiB),
  as the app sends a range, so that a slow client holds one chunk of memory at most;
- ``uvicorn_whole``: the whole 1 MiB range in one ``http.response.body`` message,

against nginx on the same file, with curl over one keep-alive connection as in
``stream_throughput.py``, and each server's CPU per request from ``/proc``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import uvicorn
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from audioverse.config import Settings
from bench.common import ROOT
from bench.stream_throughput import MIB, Run, curl, random_ranges, summary
from tests.listening.nginx import run_nginx
from tests.services import free_port, stop_process

RESULT = ROOT / "bench" / "results" / "stream_ceiling.json"
SERVERS = {
    "copy": "bare asyncio protocol: os.pread + transport.write (what an ASGI server does with a body)",
    "sendfile": "bare asyncio protocol: loop.sendfile (zero-copy, no ASGI server in the stack offers it)",
    "uvicorn_chunked": "uvicorn (uvloop, httptools), a bare ASGI app: the range in 256 KiB messages, the app's default",
    "uvicorn_whole": "uvicorn (uvloop, httptools), a bare ASGI app: the 1 MiB range in one message",
}
RANGE = re.compile(rb"\r\nrange: *bytes=(\d+)-(\d+)", re.IGNORECASE)


class RangeServer(asyncio.Protocol):
    """HTTP/1.1 keep-alive, GET with one ``Range: bytes=a-b`` only: the least a range server must do."""

    def __init__(self, path: Path, mode: str) -> None:
        self.file = path.open("rb")
        self.size = path.stat().st_size
        self.mode = mode
        self.pending = b""
        self.transport: asyncio.Transport | None = None
        self.sending: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.file.close()

    def data_received(self, data: bytes) -> None:
        self.pending += data
        head, separator, rest = self.pending.partition(b"\r\n\r\n")
        if not separator:
            return
        # curl sends the next request once the answer is in: one request at a time per connection.
        self.pending = rest
        found = RANGE.search(head)
        assert found is not None
        assert self.transport is not None
        start, end = int(found[1]), int(found[2])
        length = end - start + 1
        self.transport.write(
            b"HTTP/1.1 206 Partial Content\r\nContent-Type: audio/mpeg\r\n"
            b"Content-Length: %d\r\nContent-Range: bytes %d-%d/%d\r\n\r\n" % (length, start, end, self.size)
        )
        if self.mode == "copy":
            self.transport.write(os.pread(self.file.fileno(), length, start))
        else:
            self.sending = asyncio.get_running_loop().create_task(self.send_file(start, length))

    async def send_file(self, start: int, length: int) -> None:
        assert self.transport is not None
        await asyncio.get_running_loop().sendfile(self.transport, self.file, start, length)


def asgi_ranges(path: Path, chunk_size: int) -> ASGIApp:
    """The least an ASGI app serving ``Range: bytes=a-b`` can do: read the range, send it in ``chunk_size`` pieces."""
    size = path.stat().st_size
    descriptor = os.open(path, os.O_RDONLY)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            return
        found = RANGE.search(b"\r\n" + b"\r\n".join(b"%s: %s" % header for header in scope["headers"]))
        assert found is not None
        start, end = int(found[1]), int(found[2])
        headers = [
            (b"content-type", b"audio/mpeg"),
            (b"content-length", b"%d" % (end - start + 1)),
            (b"content-range", b"bytes %d-%d/%d" % (start, end, size)),
        ]
        await send({"type": "http.response.start", "status": 206, "headers": headers})
        position = start
        while position <= end:
            chunk = os.pread(descriptor, min(chunk_size, end + 1 - position), position)
            position += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": position <= end})

    return app


async def serve(path: Path, mode: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(lambda: RangeServer(path, mode), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def wait_for_port(port: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        else:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=200, help="size of the audio file")
    parser.add_argument(
        "--ranges", type=int, default=900, help="1 MiB range requests per round (nginx closes a connection after 1,000)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULT)
    parser.add_argument("--serve", nargs=3, metavar=("FILE", "MODE", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        file, mode, port = args.serve
        if mode.startswith("uvicorn"):
            chunk_size = Settings().stream_chunk_bytes if mode == "uvicorn_chunked" else MIB
            app = asgi_ranges(Path(file), chunk_size)
            uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning", access_log=False)
        else:
            asyncio.run(serve(Path(file), mode, int(port)))
        return
    load_before = os.getloadavg()
    runs: dict[str, list[Run]] = {name: [] for name in ("nginx", *SERVERS)}
    with tempfile.TemporaryDirectory(prefix="audioverse-ceiling-") as scratch:
        root = Path(scratch)
        audio = root / "audio" / "audio.mp3"
        audio.parent.mkdir()
        with audio.open("wb") as handle:
            for _ in range(args.mib):
                handle.write(os.urandom(MIB))
        size = audio.stat().st_size
        servers: dict[str, subprocess.Popen[bytes]] = {}
        urls: dict[str, str] = {}
        try:
            for mode in SERVERS:
                port = free_port()
                command = [sys.executable, "-m", "bench.stream_ceiling", "--serve", str(audio), mode, str(port)]
                servers[mode] = subprocess.Popen(command, cwd=ROOT)
                wait_for_port(port)
                urls[mode] = f"http://127.0.0.1:{port}/audio.mp3"
            with run_nginx(audio.parent, root / "nginx", content_type="audio/mpeg") as nginx:
                pids = {"nginx": nginx.process.pid} | {mode: process.pid for mode, process in servers.items()}
                urls["nginx"] = f"{nginx.url}/audio.mp3"
                for name in runs:
                    curl({name: pids[name]}, urls[name], random_ranges(20, size, seed=0), root)
                for round_number in range(args.rounds):
                    ranges = random_ranges(args.ranges, size, seed=round_number + 1)
                    for name, named_runs in runs.items():
                        named_runs.append(curl({name: pids[name]}, urls[name], ranges, root))
        finally:
            for process in servers.values():
                stop_process(process, 10)
    ranged = {name: summary(named_runs, rate="per_s") for name, named_runs in runs.items()}
    nginx_rate = ranged["nginx"]["per_s"]
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "client": "curl, one keep-alive connection per run, 1 MiB ranges at random offsets",
        "file_mib": args.mib,
        "rounds": args.rounds,
        "requests_per_round": args.ranges,
        "load_average_1_5_15_before": [round(load, 2) for load in load_before],
        "load_average_1_5_15_after": [round(load, 2) for load in os.getloadavg()],
        "servers": {
            "nginx": "Debian nginx, the test suite's static config (nginx's defaults: sendfile off, so it copies too)",
            **SERVERS,
        },
        "ranges_1mib": {
            name: ranged[name] | {"to_nginx_rate": round(ranged[name]["per_s"] / nginx_rate, 3)} for name in ranged
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

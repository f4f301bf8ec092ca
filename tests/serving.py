"""A real `audioverse run` on a free loopback port, for tests that need the HTTP server itself."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.services import free_port, stop_process

AUDIOVERSE = str(Path(sys.executable).parent / "audioverse")
START_SECONDS = 120


@dataclass
class Server:
    host: str
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def audioverse_run(data_dir: Path, **settings: str) -> Iterator[Server]:
    """Start `audioverse run` with ``AUDIOVERSE_<NAME>`` = each setting; yield once ``/api/health`` answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    server = Server("127.0.0.1", free_port(), data_dir / "server.log")
    environment = {
        **os.environ,
        "AUDIOVERSE_DATA_DIR": str(data_dir),
        "AUDIOVERSE_SEED_DEMO_ON_STARTUP": "false",
        "PYTHONUNBUFFERED": "1",
        **{f"AUDIOVERSE_{name.upper()}": value for name, value in settings.items()},
    }
    with server.log_path.open("wb") as log:
        process = subprocess.Popen(
            [AUDIOVERSE, "run", "--port", str(server.port)], env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            assert process.poll() is None, f"audioverse run exited: {server.log()}"
            assert time.monotonic() < deadline, f"audioverse run did not answer: {server.log()}"
            try:
                httpx.get(f"{server.url}/api/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield server
    finally:
        stop_process(process, 30)

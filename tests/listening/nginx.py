"""Start the real nginx binary on a free loopback port, serving a directory as static files."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.services import free_port, service_missing, stop_process

NGINX_BINARY = Path("/usr/sbin/nginx")
START_TIMEOUT_SECONDS = 15.0

MAIN_TEMPLATE = """
daemon off;
master_process off;
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{http}
}}
"""

STATIC_SITE = """
    default_type {content_type};
    types {{ }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        max_ranges {max_ranges};
        if_modified_since {if_modified_since};
    }}
"""


def start_nginx(prefix: Path, http: str) -> subprocess.Popen[bytes]:
    """nginx in the foreground as one process, everything under ``prefix``; ``http`` is its http block's own lines."""
    if not NGINX_BINARY.exists():
        service_missing(f"nginx is not installed at {NGINX_BINARY} (apt-get install nginx-light)")
    prefix.mkdir(parents=True, exist_ok=True)
    config = prefix / "nginx.conf"
    config.write_text(MAIN_TEMPLATE.format(prefix=prefix, http=http))
    # -e keeps nginx from opening the system error log before it has read the config.
    command = [str(NGINX_BINARY), "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass
class NginxServer:
    url: str
    process: subprocess.Popen[bytes]
    prefix: Path

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text() if path.exists() else ""


def _wait_until_serving(server: NginxServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"nginx exited with {server.process.returncode}: {server.error_log()}")
        try:
            httpx.get(f"{server.url}/", timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        return
    raise RuntimeError(f"nginx did not start within {START_TIMEOUT_SECONDS}s: {server.error_log()}")


@contextmanager
def run_nginx(
    root: Path,
    prefix: Path,
    *,
    content_type: str = "application/octet-stream",
    max_ranges: int = 1000,
    if_modified_since: str = "before",
) -> Iterator[NginxServer]:
    """nginx serving ``root`` as static files on a free port; stopped and cleaned up afterwards."""
    port = free_port()
    site = STATIC_SITE.format(
        port=port,
        root=root,
        content_type=content_type,
        max_ranges=max_ranges,
        if_modified_since=if_modified_since,
    )
    process = start_nginx(prefix, site)
    server = NginxServer(url=f"http://127.0.0.1:{port}", process=process, prefix=prefix)
    try:
        _wait_until_serving(server)
        yield server
    finally:
        stop_process(process, 10)
        shutil.rmtree(prefix, ignore_errors=True)

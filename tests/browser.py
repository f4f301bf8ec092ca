"""The Debian Chromium that browser tests drive through Playwright, and how they launch it."""

from __future__ import annotations

from pathlib import Path

from tests.services import service_missing

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_executable() -> str:
    """Chromium's path; a missing browser fails under CI and skips on a laptop, as any missing service does."""
    if not CHROMIUM.exists():
        service_missing(f"Chromium not installed at {CHROMIUM} (Debian package chromium)")
    return str(CHROMIUM)

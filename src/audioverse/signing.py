"""The service's secret key: required in production, generated and kept on disk when embedded."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from audioverse.config import Settings, SettingsError

MIN_SECRET_LENGTH = 32


def resolve_secret_key(settings: Settings) -> str:
    """The configured key; a server database without one refuses to start."""
    if settings.secret_key:
        if len(settings.secret_key) < MIN_SECRET_LENGTH:
            raise SettingsError(f"AUDIOVERSE_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters")
        return settings.secret_key
    if not settings.uses_sqlite:
        raise SettingsError(
            "AUDIOVERSE_SECRET_KEY is required with a server database; generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )
    return _persisted_key(settings.data_dir / "secret_key")


def _persisted_key(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Created owner-only from the start so the key is never readable by others.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key)
    return key


def new_opaque_token() -> tuple[str, str]:
    """A random token for a client and the hash we store in its place."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> str:
    # Opaque tokens carry 256 random bits, so a fast hash suffices; a leaked table reveals nothing usable.
    return hashlib.sha256(token.encode()).hexdigest()

"""The service's secret key: required in production, generated and kept on disk when embedded."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from datetime import datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlencode

import jwt

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


@cache
def _persisted_key(path: Path) -> str:
    """Read once per process: the digest signs a link in every mail, and each read was a blocking file read."""
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


STREAM_AUDIENCE = "audioverse:stream"


class InvalidStreamToken(ValueError):
    """The stream token is forged, expired, or for another book."""


class StreamTokenForAnotherBook(InvalidStreamToken):
    """A valid stream token, issued for another book."""


def sign_stream_token(secret: str, user_id: int, audiobook_id: int, expires_at: datetime) -> str:
    """A URL-safe token that lets one user stream one book until ``expires_at`` (no headers needed)."""
    claims = {"sub": str(user_id), "book": audiobook_id, "exp": expires_at, "aud": STREAM_AUDIENCE}
    return jwt.encode(claims, secret, algorithm="HS256")


class StreamGrant(NamedTuple):
    """What a verified stream token grants: one user, one book, until ``expires_at`` (a POSIX time)."""

    user_id: int
    audiobook_id: object
    expires_at: float


@lru_cache(maxsize=4096)
def _stream_grant(secret: str, token: str) -> StreamGrant:
    """The grant of a token whose signature and claims check out; raises :class:`InvalidStreamToken`.

    Kept per token: a player sends every range request of a listening session with the same token, and
    checking its signature each time cost more than reading the megabyte it asked for. Only successes
    are kept (an exception is never cached), and each use checks the expiry again.
    """
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], audience=STREAM_AUDIENCE, options={"require": ["exp", "sub"]}
        )
        return StreamGrant(int(claims["sub"]), claims.get("book"), float(claims["exp"]))
    except (jwt.PyJWTError, ValueError) as exc:
        raise InvalidStreamToken(str(exc)) from exc


def verify_stream_token(secret: str, token: str, audiobook_id: int) -> int:
    """The user id the token was issued to; raises :class:`InvalidStreamToken` otherwise."""
    grant = _stream_grant(secret, token)
    # PyJWT's own check (``exp`` ≤ now is expired), repeated for a grant kept from an earlier request.
    if grant.expires_at <= time.time():
        raise InvalidStreamToken("Signature has expired")
    if grant.audiobook_id != audiobook_id:
        raise StreamTokenForAnotherBook("the token is for another audiobook")
    return grant.user_id


UNSUBSCRIBE_AUDIENCE = "audioverse:unsubscribe"


class InvalidUnsubscribeToken(ValueError):
    """The unsubscribe token is forged or malformed."""


def sign_unsubscribe_token(secret: str, user_id: int, mailing: str) -> str:
    """A token that stops one mailing for one user without logging in; no expiry: RFC 8058 links must keep working."""
    return jwt.encode({"sub": str(user_id), "mailing": mailing, "aud": UNSUBSCRIBE_AUDIENCE}, secret, algorithm="HS256")


def verify_unsubscribe_token(secret: str, token: str) -> tuple[int, str]:
    """The user id and mailing the token stops; raises :class:`InvalidUnsubscribeToken` otherwise."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], audience=UNSUBSCRIBE_AUDIENCE, options={"require": ["sub"]}
        )
        return int(claims["sub"]), str(claims["mailing"])
    except (jwt.PyJWTError, KeyError, ValueError) as exc:
        raise InvalidUnsubscribeToken(str(exc)) from exc


SECURE_LINK_PREFIX = "/media/"
"""Where nginx serves local audio to a secure link (``location /media/`` in nginx/audioverse.conf.template)."""


def nginx_secure_link(secret: str, audio_key: str, expires: datetime) -> str:
    """A link to ``audio_key`` that nginx's ``secure_link`` module checks itself, valid until ``expires``.

    nginx computes ``secure_link_md5 "$secure_link_expires$uri <secret>"`` over the decoded path and
    compares it with ``md5`` (base64url, unpadded). MD5 is the only digest the module offers; what makes
    the link unforgeable is the secret inside the hashed text, which an attacker never sees.
    """
    path = SECURE_LINK_PREFIX + audio_key
    stamp = int(expires.timestamp())
    digest = hashlib.md5(f"{stamp}{path} {secret}".encode(), usedforsecurity=False).digest()
    signature = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return f"{quote(path)}?{urlencode({'md5': signature, 'expires': stamp})}"

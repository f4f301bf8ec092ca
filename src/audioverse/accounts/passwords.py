"""Password hashing (Argon2id) and the strength rule every new password must pass."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import anyio
from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from audioverse.config import PasswordHashProfile
from audioverse.errors import FieldError, Unprocessable

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
DEFAULT_PROFILE: PasswordHashProfile = "rfc_9106_low_memory"


class Hashing:
    """An Argon2 hasher with argon2-cffi's parameter profile, and a hash of its own cost to verify against."""

    def __init__(self, profile: PasswordHashProfile) -> None:
        self.hasher = PasswordHasher.from_parameters(getattr(profiles, profile.upper()))
        # Verified against when an account does not exist, so unknown accounts take as long as wrong passwords.
        self.dummy_hash = self.hasher.hash("audioverse-timing-equaliser")


@cache
def hashing(profile: PasswordHashProfile = DEFAULT_PROFILE) -> Hashing:
    return Hashing(profile)


@cache
def common_passwords() -> frozenset[str]:
    text = (Path(__file__).parent / "common_passwords.txt").read_text()
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def password_problems(password: str, *, username: str, email: str) -> list[str]:
    """Why ``password`` is too weak (empty when it is acceptable)."""
    problems = []
    lowered = password.lower()
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"must be at most {MAX_PASSWORD_LENGTH} characters long")
    if lowered in {username.lower(), email.lower(), email.split("@", maxsplit=1)[0].lower()}:
        problems.append("must not be your username or email address")
    if lowered in common_passwords():
        problems.append("is too common; choose something less guessable")
    return problems


def ensure_strong(password: str, *, username: str, email: str, field: str = "password") -> None:
    """Raise 422 naming ``field`` when the password is too weak."""
    if problems := password_problems(password, username=username, email=email):
        raise Unprocessable(
            "The password is too weak.",
            errors=[FieldError(field=field, message=f"Password {problem}.") for problem in problems],
        )


async def hash_password(password: str, profile: PasswordHashProfile = DEFAULT_PROFILE) -> str:
    # Argon2 is deliberately slow: keep it off the event loop.
    return await anyio.to_thread.run_sync(hashing(profile).hasher.hash, password)


async def verify_password(
    password_hash: str | None, password: str, profile: PasswordHashProfile = DEFAULT_PROFILE
) -> bool:
    """Whether ``password`` matches; with no hash, spend the same time and answer no.

    A hash carries its own parameters, so hashes made under another profile still verify.
    """
    active = hashing(profile)

    def verify() -> bool:
        try:
            return active.hasher.verify(password_hash or active.dummy_hash, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(verify)

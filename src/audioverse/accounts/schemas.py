"""Wire shapes of the accounts API (msgspec Structs with their constraints)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import msgspec

from audioverse.accounts.models import MAX_PLAYBACK_SPEED, MIN_PLAYBACK_SPEED, Role
from audioverse.types import Text

# No `\s`: Python and the ECMA regexes of JSON schema disagree on what it matches (and on `\d`).
SPACE_OR_CONTROL = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# RFC 5322's specials, which an address can only hold inside quotes, break the mail headers it goes into.
NOT_IN_EMAIL = rf'@()<>\[\]:;,\\"{SPACE_OR_CONTROL}'
EMAIL_PATTERN = rf"^[^{NOT_IN_EMAIL}]+@[^{NOT_IN_EMAIL}]+\.[^{NOT_IN_EMAIL}]+$"
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320, pattern=EMAIL_PATTERN)]
Username = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=40,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="3 to 40 letters, digits, '.', '_' or '-'; unique regardless of case.",
    ),
]
# The strength rule (length ≥ 10, not common, not the username) answers 422 with a field error.
Password = Annotated[Text, msgspec.Meta(min_length=1, max_length=1024)]
Token = Annotated[Text, msgspec.Meta(min_length=1, max_length=512)]
PlaybackSpeed = Annotated[float, msgspec.Meta(ge=MIN_PLAYBACK_SPEED, le=MAX_PLAYBACK_SPEED)]
Bio = Annotated[Text, msgspec.Meta(max_length=5000)]


class RegisterRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    username: Username
    password: Password


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    username_or_email: Annotated[Text, msgspec.Meta(min_length=1, max_length=320)]
    password: Password


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Token


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: Token


class EmailRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email


class PasswordResetConfirm(msgspec.Struct, forbid_unknown_fields=True):
    token: Token
    new_password: Password


class TokenPair(msgspec.Struct):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class Accepted(msgspec.Struct):
    detail: str


class UserRead(msgspec.Struct):
    id: int
    email: str
    username: str
    bio: str
    profile_picture_url: str | None
    default_playback_speed: float
    role: Role
    is_verified: bool
    created_at: datetime
    updated_at: datetime


class ProfileReplace(msgspec.Struct, forbid_unknown_fields=True):
    """PUT: every editable field."""

    email: Email
    username: Username
    bio: Bio
    default_playback_speed: PlaybackSpeed


class ProfilePatch(msgspec.Struct, forbid_unknown_fields=True):
    """PATCH: any subset of the editable fields."""

    email: Email | msgspec.UnsetType = msgspec.UNSET
    username: Username | msgspec.UnsetType = msgspec.UNSET
    bio: Bio | msgspec.UnsetType = msgspec.UNSET
    default_playback_speed: PlaybackSpeed | msgspec.UnsetType = msgspec.UNSET


class RoleChange(msgspec.Struct, forbid_unknown_fields=True):
    role: Role


class DayListening(msgspec.Struct):
    date: date
    seconds: float


class NamedCount(msgspec.Struct):
    id: int
    name: str
    seconds: float


class UserStats(msgspec.Struct):
    total_listening_seconds: float
    audiobooks_started: int
    audiobooks_completed: int
    current_streak_days: int
    longest_streak_days: int
    listening_by_day: list[DayListening]
    top_genres: list[NamedCount]
    top_authors: list[NamedCount]
    reviews_written: int
    bookmarks_count: int

"""Profile reads and edits, pictures checked by their bytes, stats shape, roles and guards."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from PIL import Image

from audioverse.accounts.auth import ensure_owner_or_curator, requires_curator, requires_verified
from audioverse.accounts.models import Role, User
from audioverse.errors import Forbidden
from tests.accounts.test_auth_flow import bearer, login, register
from tests.services import Identity, Mailbox, token_from

Client = AsyncTestClient[Litestar]


def image_bytes(image_format: str, size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buffer, format=image_format)
    return buffer.getvalue()


async def test_profile_read_and_patch(client: Client, listener_tokens: dict[str, Any], identity: Identity) -> None:
    me = await client.get("/api/users/me", headers=bearer(listener_tokens))
    assert set(me.json()) == {
        "id", "email", "username", "bio", "profile_picture_url", "default_playback_speed",
        "role", "is_verified", "created_at", "updated_at",
    }  # fmt: skip
    patched = await client.patch(
        "/api/users/me/",
        headers=bearer(listener_tokens),
        json={"bio": "Loves sea stories.", "default_playback_speed": 1.5},
    )
    assert patched.status_code == 200
    assert patched.json()["bio"] == "Loves sea stories."
    assert patched.json()["default_playback_speed"] == 1.5
    assert patched.json()["email"] == identity.email


@pytest.mark.parametrize(
    "body",
    [
        {"default_playback_speed": 3.6},
        {"default_playback_speed": 0.4},
        {"username": "has spaces"},
        {"email": "not-an-email"},
        {"role": "admin"},
        {"bio": 5},
    ],
)
async def test_bad_profile_edits_are_4xx_and_change_nothing(
    client: Client, listener_tokens: dict[str, Any], body: dict[str, Any]
) -> None:
    before = (await client.get("/api/users/me/", headers=bearer(listener_tokens))).json()
    response = await client.patch("/api/users/me/", headers=bearer(listener_tokens), json=body)
    assert response.status_code in {400, 422}
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/api/users/me/", headers=bearer(listener_tokens))).json() == before


async def test_put_replaces_and_an_email_change_needs_verification(
    client: Client, listener_tokens: dict[str, Any], identity: Identity, mailbox: Mailbox
) -> None:
    first_mail = await mailbox.wait_for(identity.email, "Confirm your email")
    await client.post("/api/auth/verify-email/", json={"token": token_from(first_mail)})
    new_email = "moved_" + identity.email
    replaced = await client.put(
        "/api/users/me/",
        headers=bearer(listener_tokens),
        json={"email": new_email, "username": identity.username, "bio": "", "default_playback_speed": 1.0},
    )
    assert replaced.status_code == 200
    assert replaced.json()["email"] == new_email
    assert replaced.json()["is_verified"] is False
    # The link sent to the old address no longer verifies anything; the new one does.
    confirmation = await mailbox.wait_for(new_email, "Confirm your email")
    verified = await client.post("/api/auth/verify-email/", json={"token": token_from(confirmation)})
    assert verified.json()["is_verified"] is True


async def test_taking_someone_elses_username_is_409(client: Client, listener_tokens: dict[str, Any]) -> None:
    other = Identity.new()
    await register(client, other)
    response = await client.patch(
        "/api/users/me/", headers=bearer(listener_tokens), json={"username": other.username.upper()}
    )
    assert response.status_code == 409
    assert response.json()["errors"][0]["field"] == "username"


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP"])
async def test_picture_upload_is_served_back(
    client: Client, listener_tokens: dict[str, Any], image_format: str
) -> None:
    content = image_bytes(image_format)
    uploaded = await client.put(
        "/api/users/me/picture/",
        headers=bearer(listener_tokens),
        files={"picture": ("me.bin", content, "application/octet-stream")},
    )
    assert uploaded.status_code == 200, uploaded.text
    url = uploaded.json()["profile_picture_url"]
    served = await client.get(url)
    assert served.status_code == 200
    assert served.content == content
    assert served.headers["content-type"] == f"image/{image_format.lower()}"


async def test_replacing_a_picture_removes_the_old_one(client: Client, listener_tokens: dict[str, Any]) -> None:
    first = await client.put(
        "/api/users/me/picture/",
        headers=bearer(listener_tokens),
        files={"picture": ("a.png", image_bytes("PNG"))},
    )
    second = await client.put(
        "/api/users/me/picture/",
        headers=bearer(listener_tokens),
        files={"picture": ("b.jpg", image_bytes("JPEG"))},
    )
    assert first.json()["profile_picture_url"] != second.json()["profile_picture_url"]
    assert (await client.get(second.json()["profile_picture_url"])).status_code == 200


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"just some text pretending to be an image", 422),
        (b"", 422),
        (image_bytes("PNG")[:60], 422),  # truncated
        (image_bytes("GIF"), 422),  # a real image, but not an accepted format
    ],
)
async def test_bad_pictures_are_refused(
    client: Client, listener_tokens: dict[str, Any], content: bytes, status: int
) -> None:
    response = await client.put(
        "/api/users/me/picture/",
        headers=bearer(listener_tokens),
        files={"picture": ("x.png", content, "image/png")},
    )
    assert response.status_code == status, response.text
    me = await client.get("/api/users/me/", headers=bearer(listener_tokens))
    assert me.json()["profile_picture_url"] is None


async def test_oversized_picture_is_413(client: Client, listener_tokens: dict[str, Any], settings: Any) -> None:
    big = b"\x89PNG" + b"\0" * settings.max_picture_bytes
    response = await client.put(
        "/api/users/me/picture/", headers=bearer(listener_tokens), files={"picture": ("big.png", big)}
    )
    assert response.status_code == 413


async def test_picture_field_is_required(client: Client, listener_tokens: dict[str, Any]) -> None:
    response = await client.put(
        "/api/users/me/picture/",
        headers=bearer(listener_tokens),
        files={"photo": ("a.png", image_bytes("PNG"))},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "picture"


async def test_unknown_users_have_no_picture(client: Client) -> None:
    assert (await client.get("/api/users/987654321/picture/")).status_code == 404


async def test_stats_have_the_contract_shape(client: Client, listener_tokens: dict[str, Any]) -> None:
    stats = (await client.get("/api/users/me/stats/", headers=bearer(listener_tokens))).json()
    assert stats["total_listening_seconds"] == 0
    assert set(stats) == {
        "total_listening_seconds", "audiobooks_started", "audiobooks_completed", "current_streak_days",
        "longest_streak_days", "listening_by_day", "top_genres", "top_authors", "reviews_written",
        "bookmarks_count",
    }  # fmt: skip


async def test_only_admins_change_roles(
    client: Client, admin_tokens: dict[str, Any], listener_tokens: dict[str, Any]
) -> None:
    listener = (await client.get("/api/users/me/", headers=bearer(listener_tokens))).json()
    refused = await client.put(
        f"/api/admin/users/{listener['id']}/role/", headers=bearer(listener_tokens), json={"role": "admin"}
    )
    assert refused.status_code == 403
    assert refused.json()["detail"] == "Only admins may do this."
    await anyio.sleep(1.1)  # access tokens are compared with the role change at second precision
    promoted = await client.put(
        f"/api/admin/users/{listener['id']}/role/", headers=bearer(admin_tokens), json={"role": "curator"}
    )
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "curator"
    # The old access token carried the old role; it no longer works, a refreshed one does.
    assert (await client.get("/api/users/me/", headers=bearer(listener_tokens))).status_code == 401
    fresh = await client.post("/api/auth/refresh/", json={"refresh_token": listener_tokens["refresh_token"]})
    assert (await client.get("/api/users/me/", headers=bearer(fresh.json()))).json()["role"] == "curator"
    bad_role = await client.put(
        f"/api/admin/users/{listener['id']}/role/", headers=bearer(admin_tokens), json={"role": "owner"}
    )
    assert bad_role.status_code in {400, 422}
    missing = await client.put("/api/admin/users/987654321/role/", headers=bearer(admin_tokens), json={"role": "admin"})
    assert missing.status_code == 404


async def test_admin_logs_in_verified(client: Client, admin_tokens: dict[str, Any]) -> None:
    me = (await client.get("/api/users/me/", headers=bearer(admin_tokens))).json()
    assert me["role"] == "admin"
    assert me["is_verified"] is True


def _connection(user: User) -> Any:
    return SimpleNamespace(user=user, scope={"method": "POST"})


@pytest.mark.parametrize(
    ("role", "verified", "curator_allowed", "verified_allowed"),
    [
        (Role.LISTENER, False, False, False),
        (Role.LISTENER, True, False, True),
        (Role.CURATOR, True, True, True),
        (Role.ADMIN, True, True, True),
    ],
)
def test_guards_allow_and_refuse(role: Role, verified: bool, curator_allowed: bool, verified_allowed: bool) -> None:
    user = User(id=7, role=role, is_verified=verified)
    for guard, allowed in ((requires_curator, curator_allowed), (requires_verified, verified_allowed)):
        if allowed:
            guard(_connection(user), None)  # type: ignore[arg-type]
        else:
            with pytest.raises(Forbidden):
                guard(_connection(user), None)  # type: ignore[arg-type]


def test_owner_or_curator() -> None:
    ensure_owner_or_curator(User(id=1, role=Role.LISTENER), owner_id=1)
    ensure_owner_or_curator(User(id=2, role=Role.CURATOR), owner_id=1)
    with pytest.raises(Forbidden, match="owner or a curator"):
        ensure_owner_or_curator(User(id=3, role=Role.LISTENER), owner_id=1)


async def test_login_with_admin_cli_identity_is_case_insensitive(client: Client, identity: Identity) -> None:
    await register(client, identity)
    tokens = await login(client, identity.username.upper(), identity.password)
    assert tokens["access_token"]

"""The whole account life cycle on both profiles, with emails read where each profile delivers them."""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.services import Identity, Mailbox, token_from

Client = AsyncTestClient[Litestar]


async def register(client: Client, identity: Identity) -> dict[str, Any]:
    response = await client.post(
        "/api/auth/register/",
        json={"email": identity.email, "username": identity.username, "password": identity.password},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(client: Client, login_name: str, password: str) -> dict[str, Any]:
    response = await client.post("/api/auth/login/", json={"username_or_email": login_name, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def test_register_verify_login_refresh_reuse_logout_reset(
    client: Client, identity: Identity, mailbox: Mailbox
) -> None:
    created = await register(client, identity)
    assert created["email"] == identity.email
    assert created["is_verified"] is False
    assert created["role"] == "listener"
    assert "password" not in str(created)

    verification = await mailbox.wait_for(identity.email, "Confirm your email")
    assert verification.is_multipart()  # plain text and HTML alternatives
    token = token_from(verification)
    verified = await client.post("/api/auth/verify-email/", json={"token": token})
    assert verified.status_code == 200
    assert verified.json()["is_verified"] is True
    again = await client.post("/api/auth/verify-email/", json={"token": token})
    assert again.status_code == 422
    assert again.json()["errors"][0]["field"] == "token"

    # Logging in works with the username or the email in any case.
    first = await login(client, identity.email.upper(), identity.password)
    assert first["token_type"] == "bearer"
    assert first["expires_in"] == 15 * 60
    me = await client.get("/api/users/me/", headers=bearer(first))
    assert me.json()["username"] == identity.username

    rotated = await client.post("/api/auth/refresh/", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get("/api/users/me/", headers=bearer(second))).status_code == 200

    # Reusing the spent token is theft: 401, and the whole family dies with it.
    reused = await client.post("/api/auth/refresh/", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert reused.headers["content-type"].startswith("application/problem+json")
    descendant = await client.post("/api/auth/refresh/", json={"refresh_token": second["refresh_token"]})
    assert descendant.status_code == 401

    session = await login(client, identity.username, identity.password)
    other_device = await login(client, identity.username, identity.password)
    assert (await client.post("/api/auth/logout/", json={"refresh_token": session["refresh_token"]})).status_code == 204
    after_logout = await client.post("/api/auth/refresh/", json={"refresh_token": session["refresh_token"]})
    assert after_logout.status_code == 401

    # Access tokens are checked against the moment credentials changed (second precision).
    await anyio.sleep(1.1)
    requested = await client.post("/api/auth/password-reset/", json={"email": identity.email})
    assert requested.status_code == 202
    reset_mail = await mailbox.wait_for(identity.email, "Reset your AudioVerse password")
    new_password = identity.password + " renewed"
    confirmed = await client.post(
        "/api/auth/password-reset/confirm/",
        json={"token": token_from(reset_mail), "new_password": new_password},
    )
    assert confirmed.status_code == 204

    old_password = await client.post(
        "/api/auth/login/", json={"username_or_email": identity.username, "password": identity.password}
    )
    assert old_password.status_code == 401
    await login(client, identity.username, new_password)
    # Every session from before the reset is gone: refresh tokens and access tokens alike.
    stale_refresh = await client.post("/api/auth/refresh/", json={"refresh_token": other_device["refresh_token"]})
    assert stale_refresh.status_code == 401
    assert (await client.get("/api/users/me/", headers=bearer(other_device))).status_code == 401


async def test_wrong_password_and_unknown_account_answer_identically(client: Client, identity: Identity) -> None:
    await register(client, identity)
    wrong = await client.post(
        "/api/auth/login/",
        json={"username_or_email": identity.username, "password": "not the password at all"},
    )
    unknown = await client.post(
        "/api/auth/login/",
        json={"username_or_email": "nobody_" + identity.username, "password": "whatever it is"},
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.headers["content-type"] == unknown.headers["content-type"]


async def test_reset_and_resend_answer_202_whatever_the_address(
    client: Client, identity: Identity, mailbox: Mailbox
) -> None:
    ghost = "ghost_" + identity.email
    for path in ("/api/auth/password-reset/", "/api/auth/resend-verification/"):
        response = await client.post(path, json={"email": ghost})
        assert response.status_code == 202
        assert response.json() == {"detail": "If an account matches, an email is on its way."}
    await register(client, identity)
    resent = await client.post("/api/auth/resend-verification/", json={"email": identity.email})
    assert resent.status_code == 202
    second = await mailbox.wait_for(identity.email, "Confirm your email", count=2)
    first = await mailbox.wait_for(identity.email, "Confirm your email", count=1)
    assert token_from(second) != token_from(first)
    assert mailbox.to(ghost) == []


async def test_duplicates_are_409_regardless_of_case(client: Client, identity: Identity) -> None:
    await register(client, identity)
    other = Identity.new()
    same_email = await client.post(
        "/api/auth/register/",
        json={"email": identity.email.upper(), "username": other.username, "password": other.password},
    )
    assert same_email.status_code == 409
    assert same_email.json()["errors"] == [{"field": "email", "message": "An account with this email already exists."}]
    same_username = await client.post(
        "/api/auth/register/",
        json={"email": other.email, "username": identity.username.upper(), "password": other.password},
    )
    assert same_username.status_code == 409
    assert same_username.json()["errors"][0]["field"] == "username"


async def test_weak_passwords_are_422_with_a_field_error(client: Client, identity: Identity) -> None:
    for weak, reason in [
        ("short1", "at least 10 characters"),
        ("password123", "too common"),
        (identity.username, "username or email"),
    ]:
        response = await client.post(
            "/api/auth/register/",
            json={"email": identity.email, "username": identity.username, "password": weak},
        )
        assert response.status_code == 422, weak
        errors = response.json()["errors"]
        assert errors[0]["field"] == "password"
        assert any(reason in error["message"] for error in errors), errors
    # Nothing was created by the refused attempts.
    assert (await register(client, identity))["username"] == identity.username


async def test_expired_and_unknown_email_tokens_are_refused(client: Client, identity: Identity) -> None:
    response = await client.post("/api/auth/verify-email/", json={"token": "not-a-real-token"})
    assert response.status_code == 422
    reset = await client.post(
        "/api/auth/password-reset/confirm/",
        json={"token": "not-a-real-token", "new_password": identity.password},
    )
    assert reset.status_code == 422
    assert reset.json()["detail"].startswith("The link is invalid")

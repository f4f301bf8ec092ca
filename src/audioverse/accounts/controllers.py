"""HTTP routes of accounts: /api/auth/*, /api/users/me/*, and the admin role change."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, patch, post, put
from litestar.datastructures import State, UploadFile
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import Body
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.auth import PUBLIC, requires_admin
from audioverse.accounts.models import User
from audioverse.accounts.schemas import (
    Accepted,
    EmailRequest,
    LoginRequest,
    PasswordResetConfirm,
    ProfilePatch,
    ProfileReplace,
    RefreshRequest,
    RegisterRequest,
    RoleChange,
    TokenPair,
    TokenRequest,
    UserRead,
)
from audioverse.accounts.services import Accounts
from audioverse.config import Settings
from audioverse.errors import NotFound, problem_responses
from audioverse.jobs import defer
from audioverse.mail import OutgoingEmail
from audioverse.openapi import ImageOperation, file_field, form_operation
from audioverse.ratelimit import RateLimiter
from audioverse.storage import DELETE_TASK as DELETE_STORED_OBJECTS
from audioverse.storage import ObjectNotFound, Storage
from audioverse.types import Id
from audioverse.uploads import IMAGE_TYPES, identify_image_async, required_file, save_upload

PICTURE_BODY_LIMIT_BYTES = 10_000_000
ACCEPTED_DETAIL = "If an account matches, an email is on its way."


def provide_accounts(db_session: AsyncSession, settings: Settings, state: State) -> Accounts:
    return Accounts(session=db_session, settings=settings, jwt_auth=state.jwt_auth)


def user_read(user: User) -> UserRead:
    picture = None
    if user.profile_picture_key:
        # The key changes with every upload, so clients and caches never show a stale picture.
        version = user.profile_picture_key.rsplit("/", 1)[-1].split(".")[0]
        picture = f"/api/users/{user.id}/picture/?v={version}"
    return UserRead(
        id=user.id,
        email=user.email,
        username=user.username,
        bio=user.bio,
        profile_picture_url=picture,
        default_playback_speed=user.default_playback_speed,
        role=user.role,
        is_verified=user.is_verified,
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


EMAIL_TASK = "email.send"


async def send_after_commit(session: AsyncSession, email: OutgoingEmail | None) -> None:
    """The email leaves once ``session``'s transaction has committed, and never if it does not."""
    if email is not None:
        await defer(session, EMAIL_TASK, msgspec.to_builtins(email))


def client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


AUTH_ERRORS = problem_responses(HTTPStatus.TOO_MANY_REQUESTS)


async def accept_email_request(
    scope: str,
    address: str,
    request: Request[Any, Any, Any],
    auth_rate_limiter: RateLimiter,
    accounts: Accounts,
    email_for: Callable[[str], Awaitable[OutgoingEmail | None]],
) -> Response[Accepted]:
    """The same 202 whether or not ``address`` has an account; the email, if any, leaves after the commit."""
    await auth_rate_limiter.hit(f"{scope}:client:{client_address(request)}", f"{scope}:account:{address.lower()}")
    await send_after_commit(accounts.session, await email_for(address))
    return Response(Accepted(detail=ACCEPTED_DETAIL), status_code=HTTPStatus.ACCEPTED)


class AuthController(Controller):
    path = "/api/auth"
    tags = ["accounts"]
    opt = PUBLIC
    dependencies = {"accounts": Provide(provide_accounts, sync_to_thread=False)}

    @post(
        "/register",
        summary="Create an account",
        description="Sends a verification email. Duplicate email or username → 409; weak password → 422.",
        responses=problem_responses(HTTPStatus.CONFLICT, HTTPStatus.UNPROCESSABLE_ENTITY, 429),
    )
    async def register(
        self,
        data: RegisterRequest,
        request: Request[Any, Any, Any],
        accounts: Accounts,
        auth_rate_limiter: RateLimiter,
    ) -> Response[UserRead]:
        await auth_rate_limiter.hit(f"register:client:{client_address(request)}")
        user, email = await accounts.register(data.email, data.username, data.password)
        await send_after_commit(accounts.session, email)
        return Response(user_read(user), status_code=HTTPStatus.CREATED)

    @post(
        "/verify-email",
        summary="Confirm an email address with the emailed token",
        status_code=HTTPStatus.OK,
        responses=problem_responses(HTTPStatus.UNPROCESSABLE_ENTITY),
    )
    async def verify_email(self, data: TokenRequest, accounts: Accounts) -> UserRead:
        return user_read(await accounts.verify_email(data.token))

    @post(
        "/resend-verification",
        summary="Send the verification email again",
        description="Always 202, whether or not the address has an account.",
        status_code=HTTPStatus.ACCEPTED,
        responses=AUTH_ERRORS,
    )
    async def resend_verification(
        self,
        data: EmailRequest,
        request: Request[Any, Any, Any],
        accounts: Accounts,
        auth_rate_limiter: RateLimiter,
    ) -> Response[Accepted]:
        return await accept_email_request(
            "resend", data.email, request, auth_rate_limiter, accounts, accounts.resend_verification
        )

    @post(
        "/login",
        summary="Exchange credentials for an access and a refresh token",
        description="Wrong password and unknown account answer the same 401.",
        status_code=HTTPStatus.OK,
        responses=problem_responses(HTTPStatus.UNAUTHORIZED, HTTPStatus.TOO_MANY_REQUESTS),
    )
    async def login(
        self,
        data: LoginRequest,
        request: Request[Any, Any, Any],
        accounts: Accounts,
        auth_rate_limiter: RateLimiter,
    ) -> TokenPair:
        await auth_rate_limiter.hit(
            f"login:client:{client_address(request)}",
            f"login:account:{data.username_or_email.strip().lower()}",
        )
        user = await accounts.authenticate(data.username_or_email, data.password)
        return await accounts.issue_tokens(user)

    @post(
        "/refresh",
        summary="Rotate a refresh token into a new token pair",
        description="Each refresh token works once; presenting a used one revokes its whole family → 401.",
        status_code=HTTPStatus.OK,
        responses=problem_responses(HTTPStatus.UNAUTHORIZED),
    )
    async def refresh(self, data: RefreshRequest, accounts: Accounts) -> TokenPair:
        return await accounts.refresh(data.refresh_token)

    @post("/logout", summary="Revoke this session's refresh family", status_code=HTTPStatus.NO_CONTENT)
    async def logout(self, data: RefreshRequest, accounts: Accounts) -> None:
        await accounts.logout(data.refresh_token)

    @post(
        "/password-reset",
        summary="Email a password reset link",
        description="Always 202, whether or not the address has an account.",
        status_code=HTTPStatus.ACCEPTED,
        responses=AUTH_ERRORS,
    )
    async def password_reset(
        self,
        data: EmailRequest,
        request: Request[Any, Any, Any],
        accounts: Accounts,
        auth_rate_limiter: RateLimiter,
    ) -> Response[Accepted]:
        return await accept_email_request(
            "reset", data.email, request, auth_rate_limiter, accounts, accounts.password_reset_email
        )

    @post(
        "/password-reset/confirm",
        summary="Set a new password with the emailed token",
        description="Signs the user out everywhere: every refresh token is revoked.",
        status_code=HTTPStatus.NO_CONTENT,
        responses=problem_responses(HTTPStatus.UNPROCESSABLE_ENTITY),
    )
    async def password_reset_confirm(self, data: PasswordResetConfirm, accounts: Accounts) -> None:
        await accounts.reset_password(data.token, data.new_password)


class ProfileController(Controller):
    path = "/api/users"
    tags = ["accounts"]
    dependencies = {"accounts": Provide(provide_accounts, sync_to_thread=False)}

    @get("/me", summary="The caller's profile")
    async def me(self, request: Request[User, Any, Any]) -> UserRead:
        return user_read(request.user)

    @put(
        "/me",
        summary="Replace the caller's profile",
        description="A new email address must be verified again (an email is sent).",
        responses=problem_responses(HTTPStatus.CONFLICT, HTTPStatus.UNPROCESSABLE_ENTITY),
    )
    async def replace(
        self,
        data: ProfileReplace,
        request: Request[User, Any, Any],
        accounts: Accounts,
    ) -> UserRead:
        email = await accounts.update_profile(
            request.user,
            email=data.email,
            username=data.username,
            bio=data.bio,
            default_playback_speed=data.default_playback_speed,
        )
        await send_after_commit(accounts.session, email)
        return user_read(request.user)

    @patch(
        "/me",
        summary="Change some of the caller's profile fields",
        responses=problem_responses(HTTPStatus.CONFLICT, HTTPStatus.UNPROCESSABLE_ENTITY),
    )
    async def update(self, data: ProfilePatch, request: Request[User, Any, Any], accounts: Accounts) -> UserRead:
        fields = {
            name: None if value is msgspec.UNSET else value for name, value in msgspec.structs.asdict(data).items()
        }
        email = await accounts.update_profile(request.user, **fields)
        await send_after_commit(accounts.session, email)
        return user_read(request.user)

    @put(
        "/me/picture",
        summary="Upload a profile picture (JPEG, PNG or WebP)",
        description="multipart/form-data with one `picture` file; checked by its bytes, size-limited.",
        operation_class=form_operation(
            Schema(
                type=OpenAPIType.OBJECT,
                required=["picture"],
                properties={"picture": file_field("A JPEG, PNG or WebP image.", "image/*")},
            )
        ),
        responses=problem_responses(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, HTTPStatus.UNPROCESSABLE_ENTITY),
        # Litestar reads a multipart form whole, so the picture's own bound (max_picture_bytes) sits below this.
        request_max_body_size=PICTURE_BODY_LIMIT_BYTES,
    )
    async def upload_picture(
        self,
        data: Annotated[dict[str, UploadFile], Body(media_type=RequestEncodingType.MULTI_PART)],
        request: Request[User, Any, Any],
        storage: Storage,
        settings: Settings,
        db_session: AsyncSession,
    ) -> UserRead:
        upload = required_file(data.get("picture"), "picture", "image")
        user = request.user
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "picture"
            await save_upload(upload, path, settings.max_picture_bytes, "picture")
            extension, content_type = await identify_image_async(path, "picture")
            key = f"users/{user.id}/picture-{secrets.token_hex(8)}.{extension}"
            await storage.put_file(key, path, content_type)
        previous = user.profile_picture_key
        user.profile_picture_key = key
        await db_session.flush()
        if previous:
            # The old picture goes once the new key has committed; were the commit to fail, the row keeps it.
            await defer(db_session, DELETE_STORED_OBJECTS, [previous])
        return user_read(user)

    @get(
        "/{user_id:int}/picture",
        summary="A user's profile picture",
        opt=PUBLIC,
        operation_class=ImageOperation,
        responses=problem_responses(HTTPStatus.NOT_FOUND),
    )
    async def picture(self, user_id: Id, db_session: AsyncSession, storage: Storage) -> Stream:
        user = await db_session.get(User, user_id)
        if user is None or not user.profile_picture_key:
            raise NotFound("This user has no profile picture.")
        key = user.profile_picture_key
        try:
            info = await storage.stat(key)
        except ObjectNotFound as exc:
            raise NotFound("This user has no profile picture.") from exc
        return Stream(
            storage.read_range(key),
            media_type=IMAGE_TYPES[key.rsplit(".", 1)[-1]],
            headers={
                "Content-Length": str(info.size),
                "Cache-Control": "public, max-age=31536000, immutable",
            },
        )


class AdminUsersController(Controller):
    path = "/api/admin/users"
    tags = ["admin"]
    guards = [requires_admin]
    dependencies = {"accounts": Provide(provide_accounts, sync_to_thread=False)}

    @put(
        "/{user_id:int}/role",
        summary="Change a user's role (admin)",
        responses=problem_responses(HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND),
    )
    async def change_role(self, user_id: Id, data: RoleChange, accounts: Accounts) -> UserRead:
        return user_read(await accounts.change_role(user_id, data.role))

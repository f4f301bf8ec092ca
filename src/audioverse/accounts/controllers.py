"""HTTP routes of accounts: /api/auth/*, /api/users/me/*, and the admin role change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post, put
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import Body, JSONBody
from litestar.response import Stream

from audioverse.accounts.auth import PUBLIC, requires_admin
from audioverse.accounts.deps import USERS_DEPENDENCY
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
from audioverse.accounts.services import UserService
from audioverse.config import Settings
from audioverse.errors import problem_responses
from audioverse.openapi import ImageOperation, file_field, form_operation
from audioverse.ratelimit import RateLimiter
from audioverse.storage import Storage
from audioverse.types import Id
from audioverse.uploads import IMAGE_TYPES, required_file

PICTURE_BODY_LIMIT_BYTES = 10_000_000
ACCEPTED_DETAIL = "If an account matches, an email is on its way."


def client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


AUTH_ERRORS = problem_responses(HTTPStatus.TOO_MANY_REQUESTS)


def email_link_route(
    path: str, summary: str, scope: str, send: Callable[[UserService, str, Settings], Awaitable[None]]
) -> HTTPRouteHandler:
    """A route that emails a link to an address: the same 202 whether or not it has an account.

    Counted per client and per address alike; the email, if any, leaves after the commit.
    """

    async def email_link(
        self: Controller,
        data: JSONBody[EmailRequest],
        request: Request[Any, Any, Any],
        users: NamedDependency[UserService],
        settings: NamedDependency[Settings],
        auth_rate_limiter: NamedDependency[RateLimiter],
    ) -> Accepted:
        await auth_rate_limiter.hit(
            f"{scope}:client:{client_address(request)}", f"{scope}:account:{data.email.lower()}"
        )
        await send(users, data.email, settings)
        return Accepted(detail=ACCEPTED_DETAIL)

    # Named after its path, as a method would be: the OpenAPI operationId is made from the name.
    email_link.__name__ = email_link.__qualname__ = path.strip("/").replace("-", "_")
    return post(
        path,
        summary=summary,
        description="Always 202, whether or not the address has an account.",
        status_code=HTTPStatus.ACCEPTED,
        responses=AUTH_ERRORS,
    )(email_link)


class AuthController(Controller):
    path = "/api/auth"
    tags = ["accounts"]
    opt = PUBLIC
    dependencies = USERS_DEPENDENCY

    @post(
        "/register",
        summary="Create an account",
        description="Sends a verification email. Duplicate email or username → 409; weak password → 422.",
        responses=problem_responses(HTTPStatus.CONFLICT, HTTPStatus.UNPROCESSABLE_ENTITY, 429),
    )
    async def register(
        self,
        data: JSONBody[RegisterRequest],
        request: Request[Any, Any, Any],
        users: NamedDependency[UserService],
        settings: NamedDependency[Settings],
        auth_rate_limiter: NamedDependency[RateLimiter],
    ) -> Response[UserRead]:
        await auth_rate_limiter.hit(f"register:client:{client_address(request)}")
        user = await users.register(data.email, data.username, data.password, settings)
        return Response(users.to_schema(user, schema_type=UserRead), status_code=HTTPStatus.CREATED)

    @post(
        "/verify-email",
        summary="Confirm an email address with the emailed token",
        status_code=HTTPStatus.OK,
        responses=problem_responses(HTTPStatus.UNPROCESSABLE_ENTITY),
    )
    async def verify_email(self, data: JSONBody[TokenRequest], users: NamedDependency[UserService]) -> UserRead:
        return users.to_schema(await users.verify_email(data.token), schema_type=UserRead)

    resend_verification = email_link_route(
        "/resend-verification", "Send the verification email again", "resend", UserService.resend_verification
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
        data: JSONBody[LoginRequest],
        request: Request[Any, Any, Any],
        users: NamedDependency[UserService],
        settings: NamedDependency[Settings],
        secret_key: NamedDependency[str],
        auth_rate_limiter: NamedDependency[RateLimiter],
    ) -> TokenPair:
        await auth_rate_limiter.hit(
            f"login:client:{client_address(request)}",
            f"login:account:{data.username_or_email.strip().lower()}",
        )
        return await users.login(data.username_or_email, data.password, settings, secret_key)

    @post(
        "/refresh",
        summary="Rotate a refresh token into a new token pair",
        description="Each refresh token works once; presenting a used one revokes its whole family → 401.",
        status_code=HTTPStatus.OK,
        responses=problem_responses(HTTPStatus.UNAUTHORIZED),
    )
    async def refresh(
        self,
        data: JSONBody[RefreshRequest],
        users: NamedDependency[UserService],
        settings: NamedDependency[Settings],
        secret_key: NamedDependency[str],
    ) -> TokenPair:
        return await users.refresh(data.refresh_token, settings, secret_key)

    @post("/logout", summary="Revoke this session's refresh family", status_code=HTTPStatus.NO_CONTENT)
    async def logout(self, data: JSONBody[RefreshRequest], users: NamedDependency[UserService]) -> None:
        await users.logout(data.refresh_token)

    password_reset = email_link_route(
        "/password-reset", "Email a password reset link", "reset", UserService.request_password_reset
    )

    @post(
        "/password-reset/confirm",
        summary="Set a new password with the emailed token",
        description="Signs the user out everywhere: every refresh token is revoked.",
        status_code=HTTPStatus.NO_CONTENT,
        responses=problem_responses(HTTPStatus.UNPROCESSABLE_ENTITY),
    )
    async def password_reset_confirm(
        self,
        data: JSONBody[PasswordResetConfirm],
        users: NamedDependency[UserService],
        settings: NamedDependency[Settings],
    ) -> None:
        await users.reset_password(data.token, data.new_password, settings)


class ProfileController(Controller):
    path = "/api/users"
    tags = ["accounts"]
    dependencies = USERS_DEPENDENCY

    @get("/me", summary="The caller's profile")
    async def me(self, request: Request[User, Any, Any], users: NamedDependency[UserService]) -> UserRead:
        return users.to_schema(request.user, schema_type=UserRead)

    @put(
        "/me",
        summary="Replace the caller's profile",
        description="A new email address must be verified again (an email is sent).",
        responses=problem_responses(HTTPStatus.CONFLICT, HTTPStatus.UNPROCESSABLE_ENTITY),
    )
    async def replace(
        self,
        data: JSONBody[ProfileReplace],
        request: Request[User, Any, Any],
        users: NamedDependency[UserService],
        settings: NamedDependency[Settings],
    ) -> UserRead:
        return users.to_schema(await users.update_profile(request.user, data, settings), schema_type=UserRead)

    @patch(
        "/me",
        summary="Change some of the caller's profile fields",
        responses=problem_responses(HTTPStatus.CONFLICT, HTTPStatus.UNPROCESSABLE_ENTITY),
    )
    async def update(
        self,
        data: JSONBody[ProfilePatch],
        request: Request[User, Any, Any],
        users: NamedDependency[UserService],
        settings: NamedDependency[Settings],
    ) -> UserRead:
        return users.to_schema(await users.update_profile(request.user, data, settings), schema_type=UserRead)

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
        users: NamedDependency[UserService],
        storage: NamedDependency[Storage],
        settings: NamedDependency[Settings],
    ) -> UserRead:
        upload = required_file(data.get("picture"), "picture", "image")
        user = await users.replace_picture(request.user, upload, storage, settings)
        return users.to_schema(user, schema_type=UserRead)

    @get(
        "/{user_id:int}/picture",
        summary="A user's profile picture",
        opt=PUBLIC,
        operation_class=ImageOperation,
        responses=problem_responses(HTTPStatus.NOT_FOUND),
    )
    async def picture(
        self, user_id: Id, users: NamedDependency[UserService], storage: NamedDependency[Storage]
    ) -> Stream:
        stored = await users.picture(user_id, storage)
        return Stream(
            storage.read_range(stored.key),
            media_type=IMAGE_TYPES[stored.key.rsplit(".", 1)[-1]],
            headers={
                "Content-Length": str(stored.size),
                "Cache-Control": "public, max-age=31536000, immutable",
            },
        )


class AdminUsersController(Controller):
    path = "/api/admin/users"
    tags = ["admin"]
    guards = [requires_admin]
    dependencies = USERS_DEPENDENCY

    @put(
        "/{user_id:int}/role",
        summary="Change a user's role (admin)",
        responses=problem_responses(HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND),
    )
    async def change_role(
        self, user_id: Id, data: JSONBody[RoleChange], users: NamedDependency[UserService]
    ) -> UserRead:
        return users.to_schema(await users.change_role(user_id, data.role), schema_type=UserRead)

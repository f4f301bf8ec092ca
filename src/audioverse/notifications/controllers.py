"""HTTP routes of notifications: the caller's follows and preferences, and the one-click unsubscribe."""

from __future__ import annotations

from html import escape
from http import HTTPStatus
from typing import Annotated, Any
from urllib.parse import urlencode

from advanced_alchemy.extensions.litestar.providers import create_service_provider
from litestar import Controller, MediaType, Request, Response, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, Parameter

from audioverse.accounts.auth import PUBLIC
from audioverse.accounts.models import User
from audioverse.errors import FieldError, Unprocessable, problem_responses
from audioverse.notifications.schemas import FollowsRead, FollowsWrite, PreferencesRead, PreferencesWrite, Unsubscribed
from audioverse.notifications.services import NotificationService
from audioverse.signing import InvalidUnsubscribeToken, verify_unsubscribe_token

NOTIFICATIONS = {"notifications": Provide(create_service_provider(NotificationService))}
UnsubscribeToken = Annotated[str, Parameter(description="The token of the mail's unsubscribe link.", max_length=1000)]


class FollowsController(Controller):
    path = "/api/users/me/follows"
    tags = ["notifications"]
    dependencies = NOTIFICATIONS

    @get("/", summary="What the caller follows: explicitly, and through the books they keep or finished")
    async def follows(
        self, request: Request[User, Any, Any], notifications: NamedDependency[NotificationService]
    ) -> FollowsRead:
        return await notifications.follows(request.user.id)

    @put(
        "/",
        summary="Replace the caller's explicit follows",
        description="Authors and narrators by id, genres by slug, series by name. A list left out is emptied. "
        "422 names an id or slug that does not exist.",
        responses=problem_responses(HTTPStatus.UNPROCESSABLE_ENTITY),
    )
    async def replace(
        self,
        data: JSONBody[FollowsWrite],
        request: Request[User, Any, Any],
        notifications: NamedDependency[NotificationService],
    ) -> FollowsRead:
        return await notifications.replace_follows(request.user.id, data)

    @delete("/", summary="Stop following everything the caller follows explicitly")
    async def clear(
        self, request: Request[User, Any, Any], notifications: NamedDependency[NotificationService]
    ) -> None:
        await notifications.clear_follows(request.user.id)


class NotificationPreferencesController(Controller):
    path = "/api/users/me/notifications"
    tags = ["notifications"]
    dependencies = NOTIFICATIONS

    @get("/", summary="How the caller hears of new releases and their weekly digest")
    async def preferences(
        self, request: Request[User, Any, Any], notifications: NamedDependency[NotificationService]
    ) -> PreferencesRead:
        return await notifications.preferences(request.user.id)

    @put(
        "/",
        summary="Change the caller's notification preferences",
        description="Fields left out keep their value. `digest_day` and `digest_hour` are in `time_zone` (an IANA "
        "name); new releases come at once (`instant`), in one mail a day at the digest hour (`daily`) or not at all.",
        responses=problem_responses(HTTPStatus.UNPROCESSABLE_ENTITY),
    )
    async def update(
        self,
        data: JSONBody[PreferencesWrite],
        request: Request[User, Any, Any],
        notifications: NamedDependency[NotificationService],
    ) -> PreferencesRead:
        return await notifications.update_preferences(request.user.id, data)


class UnsubscribeController(Controller):
    path = "/api/notifications/unsubscribe"
    tags = ["notifications"]
    dependencies = NOTIFICATIONS

    @post(
        "/",
        summary="One-click unsubscribe (RFC 8058): stop the mailing the token names, without logging in",
        opt=PUBLIC,
        status_code=HTTPStatus.OK,
        responses=problem_responses(HTTPStatus.UNPROCESSABLE_ENTITY),
    )
    async def unsubscribe(
        self,
        token: UnsubscribeToken,
        notifications: NamedDependency[NotificationService],
        secret_key: NamedDependency[str],
    ) -> Unsubscribed:
        invalid = Unprocessable(
            "This unsubscribe link is not valid.", errors=[FieldError(field="token", message="not a valid link")]
        )
        try:
            user_id, mailing = verify_unsubscribe_token(secret_key, token)
        except InvalidUnsubscribeToken as exc:
            raise invalid from exc
        if mailing not in {"releases", "digest"}:
            raise invalid
        await notifications.unsubscribe(user_id, "digest" if mailing == "digest" else "releases")
        return Unsubscribed(mailing="digest" if mailing == "digest" else "releases")

    @get(
        "/",
        summary="The page a mail's unsubscribe link opens: one button that posts the unsubscribe",
        description="Opening the link changes nothing (mail scanners open links); the button does.",
        opt=PUBLIC,
        media_type=MediaType.HTML,
    )
    async def confirm_page(self, token: UnsubscribeToken) -> Response[str]:
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Unsubscribe</title></head><body>'
            f'<form method="post" action="?{escape(urlencode({"token": token}), quote=True)}">'
            '<p>Stop these emails from AudioVerse?</p><button type="submit">Unsubscribe</button></form></body></html>'
        )
        return Response(page, media_type=MediaType.HTML)

"""Account rules: registration, login, refresh-token rotation, verification, reset, profile, roles."""

from __future__ import annotations

import secrets
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from litestar.datastructures import UploadFile
from sqlalchemy import ColumnElement, func, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.auth import access_token
from audioverse.accounts.models import EmailToken, EmailTokenPurpose, RefreshToken, Role, User
from audioverse.accounts.passwords import ensure_strong, hash_password, verify_password
from audioverse.accounts.schemas import ProfilePatch, ProfileReplace, TokenPair
from audioverse.config import Settings
from audioverse.errors import Conflict, FieldError, NotFound, Unauthorized, Unprocessable
from audioverse.jobs import defer
from audioverse.mail import EMAIL_TASK, OutgoingEmail, render_email
from audioverse.signing import new_opaque_token, token_digest
from audioverse.storage import DELETE_TASK as DELETE_STORED_OBJECTS
from audioverse.storage import ObjectInfo, ObjectNotFound, Storage
from audioverse.uploads import identify_image_async, save_upload

INVALID_CREDENTIALS = "Invalid username/email or password."
INVALID_REFRESH = "The refresh token is invalid, expired or already used; log in again."
NO_PICTURE = "This user has no profile picture."


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def email_after_commit(session: AsyncSession, email: OutgoingEmail | None) -> None:
    """The email leaves once ``session``'s transaction has committed, and never if it does not."""
    if email is not None:
        await defer(session, EMAIL_TASK, msgspec.to_builtins(email))


async def mark_used(
    session: AsyncSession, model: type[RefreshToken | EmailToken], token_id: int, now: datetime
) -> bool:
    """Spend a single-use token; ``False`` when it was already spent.

    One guarded statement, so of two concurrent spends exactly one succeeds.
    """
    spent = await session.execute(
        update(model)
        .where(model.id == token_id, model.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(spent.rowcount == 1)  # type: ignore[attr-defined]


class RefreshTokenRepository(SQLAlchemyAsyncRepository[RefreshToken]):
    model_type = RefreshToken


class RefreshTokenService(SQLAlchemyAsyncRepositoryService[RefreshToken]):
    """Rotating refresh-token families: each token works once, a reused one revokes its family."""

    repository_type = RefreshTokenRepository

    async def issue(self, user: User, settings: Settings, secret_key: str, family_id: str | None = None) -> TokenPair:
        """A new access token and a refresh token in ``family_id`` (a new family at login)."""
        refresh, digest = new_opaque_token()
        await self.create(
            RefreshToken(
                user_id=user.id,
                family_id=family_id or str(uuid.uuid4()),
                token_hash=digest,
                expires_at=utcnow() + timedelta(days=settings.refresh_token_days),
            ),
            auto_commit=False,
            auto_refresh=False,
        )
        return TokenPair(
            access_token=access_token(secret_key, settings.access_token_minutes, user),
            refresh_token=refresh,
            token_type="bearer",  # noqa: S106
            expires_in=settings.access_token_minutes * 60,
        )

    async def spend(self, refresh_token: str) -> RefreshToken:
        """Mark the presented token used; 401 when it is unknown, expired, revoked or already used."""
        now = utcnow()
        stored = await self.get_one_or_none(RefreshToken.token_hash == token_digest(refresh_token))
        if stored is None or stored.revoked_at is not None or stored.expires_at <= now:
            raise Unauthorized(INVALID_REFRESH)
        if not await mark_used(self.repository.session, RefreshToken, stored.id, now):
            await self.revoke(RefreshToken.family_id == stored.family_id)
            # The revocation must outlive this 401, which would otherwise roll the request back.
            raise Unauthorized(INVALID_REFRESH, keep_writes=True)
        return stored

    async def revoke_family_of(self, refresh_token: str) -> None:
        stored = await self.get_one_or_none(RefreshToken.token_hash == token_digest(refresh_token))
        if stored is not None:
            await self.revoke(RefreshToken.family_id == stored.family_id)

    async def revoke(self, *where: ColumnElement[bool]) -> None:
        """Revoke every live token matching ``where`` (a family, or all of a user's)."""
        await self.repository.session.execute(
            update(RefreshToken)
            .where(*where, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session=False)
        )


class EmailTokenRepository(SQLAlchemyAsyncRepository[EmailToken]):
    model_type = EmailToken


class EmailTokenService(SQLAlchemyAsyncRepositoryService[EmailToken]):
    """Single-use emailed tokens (verification, password reset) and the emails that carry them."""

    repository_type = EmailTokenRepository

    async def issue(self, user: User, purpose: EmailTokenPurpose, lifetime: timedelta) -> str:
        token, digest = new_opaque_token()
        await self.create(
            EmailToken(
                user_id=user.id, purpose=purpose, email=user.email, token_hash=digest, expires_at=utcnow() + lifetime
            ),
            auto_commit=False,
            auto_refresh=False,
        )
        return token

    async def spend(self, token: str, purpose: EmailTokenPurpose) -> EmailToken:
        """Mark the token used; 422 when it is unknown, expired or already used."""
        now = utcnow()
        stored = await self.get_one_or_none(EmailToken.token_hash == token_digest(token), EmailToken.purpose == purpose)
        invalid = Unprocessable(
            "The link is invalid, expired or already used; ask for a new one.",
            errors=[FieldError(field="token", message="Invalid, expired or already used.")],
        )
        if stored is None or stored.expires_at <= now:
            raise invalid
        if not await mark_used(self.repository.session, EmailToken, stored.id, now):
            raise invalid
        return stored

    async def send_verification(self, user: User, settings: Settings) -> None:
        hours = settings.email_verification_hours
        token = await self.issue(user, EmailTokenPurpose.VERIFY_EMAIL, timedelta(hours=hours))
        email = render_email(
            "verify_email",
            to=user.email,
            subject="Confirm your email address",
            username=user.username,
            link=_link(settings, "/verify-email", token),
            hours=hours,
        )
        await email_after_commit(self.repository.session, email)

    async def send_password_reset(self, user: User, settings: Settings) -> None:
        minutes = settings.password_reset_minutes
        token = await self.issue(user, EmailTokenPurpose.PASSWORD_RESET, timedelta(minutes=minutes))
        email = render_email(
            "password_reset",
            to=user.email,
            subject="Reset your AudioVerse password",
            username=user.username,
            link=_link(settings, "/reset-password", token),
            minutes=minutes,
        )
        await email_after_commit(self.repository.session, email)


def _link(settings: Settings, path: str, token: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}{path}?{urlencode({'token': token})}"


class UserRepository(SQLAlchemyAsyncRepository[User]):
    model_type = User


class UserService(SQLAlchemyAsyncRepositoryService[User]):
    """The account workflows: every rule and query about users, their tokens and their pictures.

    The settings and the signing key come with the calls that need them: the provider builds the
    service from the request's session alone.
    """

    repository_type = UserRepository

    @property
    def refresh_tokens(self) -> RefreshTokenService:
        return RefreshTokenService(session=self.repository.session)

    @property
    def email_tokens(self) -> EmailTokenService:
        return EmailTokenService(session=self.repository.session)

    async def find_by_login(self, username_or_email: str) -> User | None:
        identifier = username_or_email.strip().lower()
        return await self.get_one_or_none(or_(User.email == identifier, func.lower(User.username) == identifier))

    async def ensure_available(self, *, email: str | None, username: str | None, exclude_id: int | None) -> None:
        """409 naming the field when another account already holds that email or username."""
        errors = []
        if email is not None:
            holder = await self.get_one_or_none(User.email == normalize_email(email))
            if holder is not None and holder.id != exclude_id:
                errors.append(FieldError(field="email", message="An account with this email already exists."))
        if username is not None:
            holder = await self.get_one_or_none(func.lower(User.username) == username.lower())
            if holder is not None and holder.id != exclude_id:
                errors.append(FieldError(field="username", message="This username is taken."))
        if errors:
            raise Conflict("The email or username is already in use.", errors=errors)

    async def register(self, email: str, username: str, password: str, settings: Settings) -> User:
        """A new, unverified listener; the verification email leaves once the account commits."""
        email = normalize_email(email)
        ensure_strong(password, username=username, email=email)
        await self.ensure_available(email=email, username=username, exclude_id=None)
        user = await self.create(
            User(
                email=email,
                username=username,
                password_hash=await hash_password(password, settings.password_hash_profile),
                credentials_changed_at=utcnow(),
            ),
            auto_commit=False,
        )
        await self.email_tokens.send_verification(user, settings)
        return user

    async def create_admin(self, email: str, username: str, password: str, settings: Settings) -> User:
        user = await self.register(email, username, password, settings)
        user.role = Role.ADMIN
        user.is_verified = True
        await self.repository.session.flush()
        return user

    async def login(self, username_or_email: str, password: str, settings: Settings, secret_key: str) -> TokenPair:
        """A token pair in a new refresh family; the same 401 for a wrong password and an unknown account."""
        user = await self.find_by_login(username_or_email)
        valid = await verify_password(user.password_hash if user else None, password, settings.password_hash_profile)
        if user is None or not valid:
            raise Unauthorized(INVALID_CREDENTIALS)
        return await self.refresh_tokens.issue(user, settings, secret_key)

    async def refresh(self, refresh_token: str, settings: Settings, secret_key: str) -> TokenPair:
        """Rotate: the presented token is spent and its successor issued; a reused one kills the family."""
        stored = await self.refresh_tokens.spend(refresh_token)
        user = await self.get_one_or_none(User.id == stored.user_id)
        if user is None:  # pragma: no cover - the foreign key cascades deletes
            raise Unauthorized(INVALID_REFRESH)
        return await self.refresh_tokens.issue(user, settings, secret_key, family_id=stored.family_id)

    async def logout(self, refresh_token: str) -> None:
        await self.refresh_tokens.revoke_family_of(refresh_token)

    async def resend_verification(self, email: str, settings: Settings) -> None:
        """Email a new verification link to an unverified account; silently nothing otherwise."""
        user = await self.get_one_or_none(User.email == normalize_email(email))
        if user is not None and not user.is_verified:
            await self.email_tokens.send_verification(user, settings)

    async def request_password_reset(self, email: str, settings: Settings) -> None:
        """Email a reset link when the address has an account; silently nothing otherwise."""
        user = await self.get_one_or_none(User.email == normalize_email(email))
        if user is not None:
            await self.email_tokens.send_password_reset(user, settings)

    async def verify_email(self, token: str) -> User:
        stored = await self.email_tokens.spend(token, EmailTokenPurpose.VERIFY_EMAIL)
        user = await self.get(stored.user_id)
        if user.email != stored.email:
            # The address changed after this link was sent; it verifies nothing now.
            raise Unprocessable(
                "This link was for an earlier email address; use the newest email.",
                errors=[FieldError(field="token", message="Sent to an address the account no longer uses.")],
            )
        user.is_verified = True
        await self.repository.session.flush()
        return user

    async def reset_password(self, token: str, new_password: str, settings: Settings) -> None:
        """Set the password and sign the user out everywhere (every refresh token revoked)."""
        stored = await self.email_tokens.spend(token, EmailTokenPurpose.PASSWORD_RESET)
        user = await self.get(stored.user_id)
        ensure_strong(new_password, username=user.username, email=user.email, field="new_password")
        user.password_hash = await hash_password(new_password, settings.password_hash_profile)
        user.credentials_changed_at = utcnow()
        # Following the emailed link proves the address, too.
        user.is_verified = user.is_verified or user.email == stored.email
        await self.refresh_tokens.revoke(RefreshToken.user_id == user.id)
        await self.repository.session.flush()

    async def update_profile(self, user: User, changes: ProfileReplace | ProfilePatch, settings: Settings) -> User:
        """Apply the fields ``changes`` carries; a new email address is unverified and gets a verification email."""
        new_email = normalize_email(changes.email) if isinstance(changes.email, str) else None
        email_changed = new_email is not None and new_email != user.email
        username = changes.username if isinstance(changes.username, str) else None
        username_changed = username is not None and username != user.username
        await self.ensure_available(
            email=new_email if email_changed else None,
            username=username if username_changed else None,
            exclude_id=user.id,
        )
        if new_email is not None and email_changed:
            user.email = new_email
            user.is_verified = False
        if username is not None:
            user.username = username
        if not isinstance(changes.bio, msgspec.UnsetType):
            user.bio = changes.bio
        if not isinstance(changes.default_playback_speed, msgspec.UnsetType):
            user.default_playback_speed = changes.default_playback_speed
        await self.repository.session.flush()
        if email_changed:
            await self.email_tokens.send_verification(user, settings)
        return user

    async def replace_picture(self, user: User, upload: UploadFile, storage: Storage, settings: Settings) -> User:
        """Store ``upload`` (a JPEG, PNG or WebP checked by its bytes) as the picture; the old one goes after commit."""
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "picture"
            await save_upload(upload, path, settings.max_picture_bytes, "picture")
            extension, content_type = await identify_image_async(path, "picture")
            # A new key per upload, so clients and caches never show a stale picture.
            key = f"users/{user.id}/picture-{secrets.token_hex(8)}.{extension}"
            await storage.put_file(key, path, content_type)
        previous = user.profile_picture_key
        user.profile_picture_key = key
        await self.repository.session.flush()
        if previous:
            # The old picture goes once the new key has committed; were the commit to fail, the row keeps it.
            await defer(self.repository.session, DELETE_STORED_OBJECTS, [previous])
        return user

    async def picture(self, user_id: int, storage: Storage) -> ObjectInfo:
        """The stored object of a user's picture; 404 when there is none."""
        user = await self.get_one_or_none(User.id == user_id)
        if user is None or not user.profile_picture_key:
            raise NotFound(NO_PICTURE)
        try:
            return await storage.stat(user.profile_picture_key)
        except ObjectNotFound as exc:
            raise NotFound(NO_PICTURE) from exc

    async def change_role(self, user_id: int, role: Role) -> User:
        user = await self.get(user_id)
        if user.role != role:
            user.role = role
            # Access tokens carry the role; make clients fetch fresh ones.
            user.credentials_changed_at = utcnow()
            await self.repository.session.flush()
        return user

"""Account rules: registration, login, refresh-token rotation, verification, reset, profile."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from litestar.security.jwt import JWTAuth
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.models import EmailToken, EmailTokenPurpose, RefreshToken, Role, User
from audioverse.accounts.passwords import ensure_strong, hash_password, verify_password
from audioverse.accounts.schemas import TokenPair
from audioverse.config import Settings
from audioverse.errors import Conflict, FieldError, Unauthorized, Unprocessable
from audioverse.mail import OutgoingEmail, render_email
from audioverse.signing import new_opaque_token, token_digest

INVALID_CREDENTIALS = "Invalid username/email or password."
INVALID_REFRESH = "The refresh token is invalid, expired or already used; log in again."


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalize_email(email: str) -> str:
    return email.strip().lower()


class UserRepository(SQLAlchemyAsyncRepository[User]):
    model_type = User


class UserService(SQLAlchemyAsyncRepositoryService[User]):
    """advanced-alchemy's CRUD for users, plus look-ups by the case-insensitive identifiers."""

    repository_type = UserRepository

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


class Accounts:
    """The account workflows for one request: a session, the settings and the token issuer."""

    # A plain class, not a dataclass: Litestar would try to validate a dataclass it injects.
    def __init__(self, session: AsyncSession, settings: Settings, jwt_auth: JWTAuth[User]) -> None:
        self.session = session
        self.settings = settings
        self.jwt_auth = jwt_auth

    @property
    def users(self) -> UserService:
        return UserService(session=self.session)

    async def register(self, email: str, username: str, password: str) -> tuple[User, OutgoingEmail]:
        email = normalize_email(email)
        ensure_strong(password, username=username, email=email)
        await self.users.ensure_available(email=email, username=username, exclude_id=None)
        user = await self.users.create(
            User(
                email=email,
                username=username,
                password_hash=await hash_password(password, self.settings.password_hash_profile),
                credentials_changed_at=utcnow(),
            ),
            auto_commit=False,
        )
        return user, await self.verification_email(user)

    async def create_admin(self, email: str, username: str, password: str) -> User:
        user, _ = await self.register(email, username, password)
        user.role = Role.ADMIN
        user.is_verified = True
        await self.session.flush()
        return user

    async def authenticate(self, username_or_email: str, password: str) -> User:
        user = await self.users.find_by_login(username_or_email)
        valid = await verify_password(
            user.password_hash if user else None, password, self.settings.password_hash_profile
        )
        if user is None or not valid:
            raise Unauthorized(INVALID_CREDENTIALS)
        return user

    async def issue_tokens(self, user: User, family_id: str | None = None) -> TokenPair:
        """A new access token and a refresh token in ``family_id`` (a new family at login)."""
        refresh, digest = new_opaque_token()
        self.session.add(
            RefreshToken(
                user_id=user.id,
                family_id=family_id or str(uuid.uuid4()),
                token_hash=digest,
                expires_at=utcnow() + timedelta(days=self.settings.refresh_token_days),
            )
        )
        await self.session.flush()
        access = self.jwt_auth.create_token(identifier=str(user.id), token_extras={"role": user.role.value})
        return TokenPair(
            access_token=access,
            refresh_token=refresh,
            token_type="bearer",  # noqa: S106
            expires_in=self.settings.access_token_minutes * 60,
        )

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate: the presented token is spent and its successor issued; a reused one kills the family."""
        now = utcnow()
        stored = await self.session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == token_digest(refresh_token))
        )
        if stored is None or stored.revoked_at is not None or stored.expires_at <= now:
            raise Unauthorized(INVALID_REFRESH)
        # Spend the token in one guarded statement so two concurrent refreshes cannot both succeed.
        spent = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == stored.id, RefreshToken.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            await self.revoke_family(stored.family_id)
            # The revocation must outlive this request's 401, which rolls the session back.
            await self.session.commit()
            raise Unauthorized(INVALID_REFRESH)
        user = await self.session.get(User, stored.user_id)
        if user is None:  # pragma: no cover - the foreign key cascades deletes
            raise Unauthorized(INVALID_REFRESH)
        return await self.issue_tokens(user, family_id=stored.family_id)

    async def revoke_family(self, family_id: str) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    async def logout(self, refresh_token: str) -> None:
        family = await self.session.scalar(
            select(RefreshToken.family_id).where(RefreshToken.token_hash == token_digest(refresh_token))
        )
        if family is not None:
            await self.revoke_family(family)

    async def revoke_all(self, user_id: int) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    async def _email_token(self, user: User, purpose: EmailTokenPurpose, lifetime: timedelta) -> str:
        token, digest = new_opaque_token()
        self.session.add(
            EmailToken(
                user_id=user.id,
                purpose=purpose,
                email=user.email,
                token_hash=digest,
                expires_at=utcnow() + lifetime,
            )
        )
        await self.session.flush()
        return token

    def _link(self, path: str, token: str) -> str:
        return f"{self.settings.public_base_url.rstrip('/')}{path}?{urlencode({'token': token})}"

    async def verification_email(self, user: User) -> OutgoingEmail:
        hours = self.settings.email_verification_hours
        token = await self._email_token(user, EmailTokenPurpose.VERIFY_EMAIL, timedelta(hours=hours))
        return render_email(
            "verify_email",
            to=user.email,
            subject="Confirm your email address",
            username=user.username,
            link=self._link("/verify-email", token),
            hours=hours,
        )

    async def password_reset_email(self, email: str) -> OutgoingEmail | None:
        user = await self.users.get_one_or_none(User.email == normalize_email(email))
        if user is None:
            return None
        minutes = self.settings.password_reset_minutes
        token = await self._email_token(user, EmailTokenPurpose.PASSWORD_RESET, timedelta(minutes=minutes))
        return render_email(
            "password_reset",
            to=user.email,
            subject="Reset your AudioVerse password",
            username=user.username,
            link=self._link("/reset-password", token),
            minutes=minutes,
        )

    async def resend_verification(self, email: str) -> OutgoingEmail | None:
        user = await self.users.get_one_or_none(User.email == normalize_email(email))
        if user is None or user.is_verified:
            return None
        return await self.verification_email(user)

    async def _spend_email_token(self, token: str, purpose: EmailTokenPurpose) -> EmailToken:
        now = utcnow()
        stored = await self.session.scalar(
            select(EmailToken).where(EmailToken.token_hash == token_digest(token), EmailToken.purpose == purpose)
        )
        invalid = Unprocessable(
            "The link is invalid, expired or already used; ask for a new one.",
            errors=[FieldError(field="token", message="Invalid, expired or already used.")],
        )
        if stored is None or stored.expires_at <= now:
            raise invalid
        spent = await self.session.execute(
            update(EmailToken)
            .where(EmailToken.id == stored.id, EmailToken.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            raise invalid
        return stored

    async def verify_email(self, token: str) -> User:
        stored = await self._spend_email_token(token, EmailTokenPurpose.VERIFY_EMAIL)
        user = await self.users.get(stored.user_id)
        if user.email != stored.email:
            # The address changed after this link was sent; it verifies nothing now.
            raise Unprocessable(
                "This link was for an earlier email address; use the newest email.",
                errors=[FieldError(field="token", message="Sent to an address the account no longer uses.")],
            )
        user.is_verified = True
        await self.session.flush()
        return user

    async def reset_password(self, token: str, new_password: str) -> None:
        stored = await self._spend_email_token(token, EmailTokenPurpose.PASSWORD_RESET)
        user = await self.users.get(stored.user_id)
        ensure_strong(new_password, username=user.username, email=user.email, field="new_password")
        user.password_hash = await hash_password(new_password, self.settings.password_hash_profile)
        user.credentials_changed_at = utcnow()
        # Following the emailed link proves the address, too.
        user.is_verified = user.is_verified or user.email == stored.email
        await self.revoke_all(user.id)
        await self.session.flush()

    async def update_profile(
        self,
        user: User,
        *,
        email: str | None,
        username: str | None,
        bio: str | None,
        default_playback_speed: float | None,
    ) -> OutgoingEmail | None:
        """Apply the given fields; a new email address is unverified and gets a verification email."""
        new_email = normalize_email(email) if email is not None else None
        email_changed = new_email is not None and new_email != user.email
        username_changed = username is not None and username != user.username
        await self.users.ensure_available(
            email=new_email if email_changed else None,
            username=username if username_changed else None,
            exclude_id=user.id,
        )
        if new_email is not None and email_changed:
            user.email = new_email
            user.is_verified = False
        if username is not None:
            user.username = username
        if bio is not None:
            user.bio = bio
        if default_playback_speed is not None:
            user.default_playback_speed = default_playback_speed
        await self.session.flush()
        return await self.verification_email(user) if email_changed else None

    async def change_role(self, user_id: int, role: Role) -> User:
        user = await self.users.get(user_id)
        if user.role != role:
            user.role = role
            # Access tokens carry the role; make clients fetch fresh ones.
            user.credentials_changed_at = utcnow()
            await self.session.flush()
        return user

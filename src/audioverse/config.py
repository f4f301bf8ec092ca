"""The one typed Settings object, read from ``AUDIOVERSE_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import msgspec

ENV_PREFIX = "AUDIOVERSE_"
# argon2-cffi's parameter profiles (argon2.profiles); "cheapest" is for test suites only.
PasswordHashProfile = Literal["rfc_9106_low_memory", "rfc_9106_high_memory", "cheapest"]


class SettingsError(ValueError):
    """Raised when the environment holds a setting that cannot be used."""


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """Every setting of the service; each field is ``AUDIOVERSE_<FIELD>`` in the environment.

    The defaults make the embedded profile: SQLite under ``data_dir``, in-process task broker,
    in-memory store, local audio storage. Setting ``redis_url`` and a PostgreSQL ``database_url``
    makes the production profile.
    """

    data_dir: Path = Path("var")
    database_url: str | None = None
    database_echo: bool = False
    database_pool_size: int = 10
    # How long a request waits for a free connection (all in use: overload) before it is answered 503.
    database_pool_timeout_seconds: int = 10
    # PostgreSQL read replicas: GET/HEAD requests read from one of these; writes and all else use database_url.
    database_read_replica_urls: list[str] = msgspec.field(default_factory=list)
    migrate_on_startup: bool = True
    seed_demo_on_startup: bool = True
    demo_books: int = 200
    redis_url: str | None = None
    # Where delayed task retries wait (by default redis_url). The scheduler finds the due ones by
    # scanning every key of this database every few seconds (taskiq-redis's schedule source), so a
    # database of their own (e.g. redis://host:6379/1) keeps that scan off the cache's keys.
    redis_retries_url: str | None = None
    redis_namespace: str = "audioverse"
    task_queue_name: str = "audioverse:tasks"
    job_max_attempts: int = 25
    search_backend: Literal["embedded", "meilisearch"] = "embedded"
    search_dir: Path | None = None
    search_index: str = "audiobooks"
    meilisearch_url: str = "http://127.0.0.1:7700"
    # Several Meilisearch nodes, each fed from the outbox on its own: searches go to a healthy one.
    # When set, it replaces meilisearch_url.
    meilisearch_urls: list[str] = msgspec.field(default_factory=list)
    meilisearch_api_key: str | None = None
    search_sync_batch: int = 500
    storage_backend: Literal["local", "s3"] = "local"
    s3_bucket: str = "audioverse"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_prefix: str = ""
    s3_stream_mode: Literal["redirect", "proxy"] = "redirect"
    # A CloudFront distribution (or compatible CDN) before the bucket: stream redirects go to its signed
    # URLs instead of S3's, signed with this key pair (the private key as a PEM file).
    s3_cdn_url: str | None = None
    s3_cdn_key_pair_id: str | None = None
    s3_cdn_private_key_file: Path | None = None
    storage_local_dir: Path | None = None
    cors_allow_origins: list[str] = msgspec.field(default_factory=list)
    public_base_url: str = "http://127.0.0.1:8000"
    secret_key: str | None = None
    access_token_minutes: int = 15
    refresh_token_days: int = 30
    email_verification_hours: int = 48
    password_reset_minutes: int = 60
    password_hash_profile: PasswordHashProfile = "rfc_9106_low_memory"  # noqa: S105 - a cost profile, no secret
    auth_rate_limit: int = 10
    auth_rate_window_seconds: int = 300
    max_body_bytes: int = 1024 * 1024
    max_picture_bytes: int = 5 * 1024 * 1024
    max_upload_bytes: int = 2 * 1024 * 1024 * 1024
    stream_url_minutes: int = 240
    stream_chunk_bytes: int = 256 * 1024
    stream_accel_redirect_prefix: str | None = None
    # Shared with nginx's secure_link (NGINX_SECURE_LINK_SECRET): with local storage, /playback/ hands out
    # links nginx checks and serves itself, so a player's ranges never reach the API.
    stream_secure_link_secret: str | None = None
    email_backend: Literal["file", "smtp"] = "file"
    email_from: str = "AudioVerse <no-reply@audioverse.local>"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 10.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False
    debug: bool = False
    readiness_timeout_seconds: float = 2.0
    request_body_idle_seconds: float = 60.0
    # /metrics answers a scrape that sends this as a bearer token; unset, only clients on this machine.
    metrics_token: str | None = None
    # How long a shared discovery answer may come from the shared cache (0: never); a write ends it sooner.
    response_cache_seconds: int = 60

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default: the process environment)."""
        source = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        raw: dict[str, Any] = {}
        for name in cls.__struct_fields__:
            value = source.get(ENV_PREFIX + name.upper())
            if value is None or value == "":
                continue
            raw[name] = _split_list(value) if _is_list(hints[name]) else value
        try:
            return msgspec.convert(raw, cls, strict=False, dec_hook=_decode_extra_types)
        except msgspec.ValidationError as exc:
            raise SettingsError(f"invalid setting: {exc} (environment prefix {ENV_PREFIX})") from exc

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL; defaults to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'audioverse.db').resolve()}"

    @property
    def resolved_storage_dir(self) -> Path:
        """Where the local storage adapter keeps objects."""
        return self.storage_local_dir or self.data_dir / "storage"

    @property
    def resolved_search_dir(self) -> Path:
        """Where the embedded search engine keeps its index."""
        return self.search_dir or self.data_dir / "search"

    @property
    def mail_dir(self) -> Path:
        """Where the file email backend writes one ``.eml`` per message."""
        return self.data_dir / "mail"

    @property
    def uses_sqlite(self) -> bool:
        """Whether the database is SQLite (batch migrations, file-backed)."""
        return self.resolved_database_url.startswith("sqlite")


def _decode_extra_types(kind: type, value: Any) -> Any:
    if kind is Path:
        return Path(value)
    raise NotImplementedError(f"cannot read {kind} from the environment")


def _is_list(hint: Any) -> bool:
    return get_origin(hint) is list or any(get_origin(arg) is list for arg in get_args(hint))


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]

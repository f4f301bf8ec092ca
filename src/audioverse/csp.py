"""The Content-Security-Policy every response carries, built from the settings in this one place."""

from __future__ import annotations

from urllib.parse import urlsplit

from audioverse.config import Settings

_BASE = {
    "default-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "media-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def storage_origins(settings: Settings) -> list[str]:
    """Origins outside this one that players load audio and images from: the S3 endpoint and the CDN.

    With S3 storage the stream answers a redirect to a presigned URL (path-style, so on the endpoint's own
    host) or to the CDN's signed URL; a media element follows it only where ``media-src`` allows.
    """
    origins: list[str] = []
    if settings.storage_backend == "s3":
        if settings.s3_endpoint_url:
            origins.append(_origin(settings.s3_endpoint_url))
        else:
            # AWS without an explicit endpoint: botocore signs for the global or the regional host.
            origins.append("https://s3.amazonaws.com")
            if settings.s3_region:
                origins.append(f"https://s3.{settings.s3_region}.amazonaws.com")
        if settings.s3_cdn_url:
            origins.append(_origin(settings.s3_cdn_url))
    return list(dict.fromkeys(origins))


def content_security_policy(settings: Settings) -> str:
    """Only this origin's scripts, styles and connections; no inline code, no framing; media also from storage."""
    directives = {name: list(sources) for name, sources in _BASE.items()}
    extra = storage_origins(settings)
    directives["img-src"] += extra
    directives["media-src"] += extra
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())

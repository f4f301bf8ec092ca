"""Audio on S3 behind a CDN: streams redirect to CloudFront-signed URLs that its public key verifies."""

from __future__ import annotations

import base64
import secrets
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from litestar.testing import AsyncTestClient

from audioverse.app import create_app
from audioverse.config import Settings, SettingsError
from audioverse.storage import S3Storage, build_storage
from tests.accounts.test_auth_flow import bearer
from tests.audio_fixtures import mp3_with_chapters
from tests.catalog.fixtures import Tokens
from tests.services import moto_s3_settings

CDN = "https://cdn.audioverse.example"
KEY_PAIR_ID = "K2JCJMDEHXQW5F"


def cloudfront_decoded(value: str) -> bytes:
    """CloudFront's URL-safe base64 (``-`` ``_`` ``~`` for ``+`` ``=`` ``/``) back to bytes."""
    return base64.b64decode(value.replace("-", "+").replace("_", "=").replace("~", "/"))


def verify_as_cloudfront(url: str, public_key: rsa.RSAPublicKey) -> int:
    """Check ``url`` the way CloudFront checks a canned-policy signed URL; its expiry (epoch seconds)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert query["Key-Pair-Id"] == [KEY_PAIR_ID]
    expires = int(query["Expires"][0])
    resource = f"{parts.scheme}://{parts.netloc}{parts.path}"
    policy = (
        f'{{"Statement":[{{"Resource":"{resource}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}'
    )
    public_key.verify(cloudfront_decoded(query["Signature"][0]), policy.encode(), padding.PKCS1v15(), hashes.SHA1())
    return expires


@pytest.fixture
def signing_key(tmp_path: Path) -> tuple[rsa.RSAPrivateKey, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "cloudfront.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return key, path


async def test_a_stream_redirects_to_a_cdn_url_signed_for_the_stream_lifetime(
    settings: Settings,
    s3_endpoint: str,
    uploader: Tokens,
    tmp_path: Path,
    signing_key: tuple[rsa.RSAPrivateKey, Path],
) -> None:
    key, key_file = signing_key
    bucket = f"cdn-{secrets.token_hex(4)}"
    behind_cdn = msgspec.structs.replace(
        settings,
        **moto_s3_settings(s3_endpoint, bucket),
        s3_prefix="books-prod/",
        s3_cdn_url=f"{CDN}/",
        s3_cdn_key_pair_id=KEY_PAIR_ID,
        s3_cdn_private_key_file=key_file,
        # Its own index and in-process jobs, as the S3 streaming test: the fixture's app is running too.
        search_dir=tmp_path / "search",
        redis_url=None,
    )
    storage = build_storage(behind_cdn)
    assert isinstance(storage, S3Storage)
    await storage.ensure_bucket()
    audio = mp3_with_chapters(tmp_path).path.read_bytes()
    async with AsyncTestClient(create_app(behind_cdn)) as client:
        created = await client.post("/api/audiobooks/", headers=bearer(uploader), files={"audio": ("a.mp3", audio)})
        assert created.status_code == 201, created.text
        book_id = created.json()["id"]
        asked_at = time.time()
        redirect = await client.get(
            f"/api/audiobooks/{book_id}/stream/", headers=bearer(uploader), follow_redirects=False
        )
        assert (await client.delete(f"/api/audiobooks/{book_id}/", headers=bearer(uploader))).status_code == 204
    assert redirect.status_code == 302, redirect.text
    location = redirect.headers["location"]
    assert location.startswith(f"{CDN}/books-prod/audiobooks/")
    expires = verify_as_cloudfront(location, key.public_key())
    lifetime = behind_cdn.stream_url_minutes * 60
    assert asked_at + lifetime - 5 <= expires <= asked_at + lifetime + 5
    # The signature covers the object: the same query on another object's URL does not verify.
    with pytest.raises(InvalidSignature):
        verify_as_cloudfront(location.replace("/audiobooks/", "/covers/", 1), key.public_key())


def test_cdn_settings_that_cannot_sign_stop_the_start(settings: Settings, tmp_path: Path) -> None:
    on_s3 = msgspec.structs.replace(settings, **moto_s3_settings("http://127.0.0.1:9", "any"), s3_cdn_url=CDN)
    with pytest.raises(SettingsError, match="AUDIOVERSE_S3_CDN_KEY_PAIR_ID"):
        build_storage(on_s3)
    not_rsa = tmp_path / "ec.pem"
    not_rsa.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    for key_file in (not_rsa, tmp_path / "missing.pem"):
        unusable = msgspec.structs.replace(on_s3, s3_cdn_key_pair_id=KEY_PAIR_ID, s3_cdn_private_key_file=key_file)
        with pytest.raises(SettingsError, match="not a usable RSA private key"):
            build_storage(unusable)

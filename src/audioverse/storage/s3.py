"""S3 storage adapter (AWS or MinIO) through aioboto3: multipart uploads, ranged reads, presigned URLs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aioboto3
from aiobotocore.config import AioConfig
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from botocore.exceptions import ClientError
from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from audioverse.storage.base import DEFAULT_CHUNK_SIZE, ObjectInfo, ObjectNotFound, StorageUnavailable

MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024
MISSING = {"404", "NoSuchKey", "NotFound"}


class CdnSigner:
    """Signed URLs of a CloudFront distribution (or one that checks CloudFront's signatures) before the bucket.

    botocore's own ``CloudFrontSigner`` writes the canned policy; CloudFront checks it with the public
    key of ``key_pair_id``, whose private half signs here (RSA with SHA-1: what CloudFront verifies).
    """

    def __init__(self, base_url: str, key_pair_id: str, private_key_pem: bytes) -> None:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("a CloudFront signing key must be an RSA private key (PEM)")
        self.base_url = base_url.rstrip("/")
        self._signer = CloudFrontSigner(
            key_pair_id,
            lambda message: key.sign(message, padding.PKCS1v15(), hashes.SHA1()),  # noqa: S303 - CloudFront's scheme
        )

    def url(self, key: str, expires_in: int) -> str:
        expires = datetime.now(UTC) + timedelta(seconds=expires_in)
        signed: str = self._signer.generate_presigned_url(f"{self.base_url}/{quote(key)}", date_less_than=expires)
        return signed


class S3Storage:
    """Objects in one bucket; each operation opens a client from one shared aioboto3 session.

    A client per operation keeps the adapter free of loop-bound state (the API and the workers run
    it on different event loops) at the cost of a connection set-up per call.
    """

    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        prefix: str = "",
        multipart_threshold: int = MULTIPART_THRESHOLD,
        multipart_chunk: int = MULTIPART_CHUNK,
        cdn: CdnSigner | None = None,
    ) -> None:
        self.bucket = bucket
        self.cdn = cdn
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self._session = aioboto3.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region
        )
        self._transfer = TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunk)
        # Path-style addressing works with MinIO and moto as well as AWS.
        self._config = AioConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"})

    def _client(self) -> Any:
        return self._session.client("s3", endpoint_url=self.endpoint_url, config=self._config)

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    async def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (development and tests)."""
        async with self._client() as s3:
            try:
                await s3.head_bucket(Bucket=self.bucket)
            except ClientError:
                await s3.create_bucket(Bucket=self.bucket)

    async def put_file(self, key: str, path: Path, content_type: str | None = None) -> ObjectInfo:
        extra = {"ContentType": content_type} if content_type else {}
        async with self._client() as s3:
            # boto3's managed transfer: multipart above the threshold, the file read part by part.
            await s3.upload_file(str(path), self.bucket, self._key(key), ExtraArgs=extra, Config=self._transfer)
        return await self.stat(key)

    async def read_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        byte_range = f"bytes={start}-{'' if end is None else end}"
        async with self._client() as s3:
            try:
                response = await s3.get_object(Bucket=self.bucket, Key=self._key(key), Range=byte_range)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in MISSING:
                    raise ObjectNotFound(key) from exc
                raise
            body = response["Body"]
            try:
                async for chunk in body.iter_chunks(chunk_size):
                    yield chunk
            finally:
                body.close()

    async def stat(self, key: str) -> ObjectInfo:
        async with self._client() as s3:
            try:
                head = await s3.head_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in MISSING:
                    raise ObjectNotFound(key) from exc
                raise
        return ObjectInfo(
            key=key,
            size=int(head["ContentLength"]),
            modified_at=head["LastModified"],
            etag=str(head["ETag"]).strip('"'),
            content_type=head.get("ContentType"),
        )

    async def delete(self, key: str) -> None:
        async with self._client() as s3:
            await s3.delete_object(Bucket=self.bucket, Key=self._key(key))

    async def check(self) -> None:
        async with self._client() as s3:
            try:
                await s3.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                # A HEAD answer has no body, so the status code is all S3 says.
                status = str(exc.response.get("Error", {}).get("Code", "unknown"))
                if status in MISSING:
                    raise StorageUnavailable(f"the S3 bucket {self.bucket!r} does not exist ({status})") from exc
                if status in {"401", "403"}:
                    raise StorageUnavailable(
                        f"the S3 credentials were refused for bucket {self.bucket!r} ({status})"
                    ) from exc
                raise StorageUnavailable(f"S3 refused HEAD on bucket {self.bucket!r} ({status})") from exc

    async def presigned_url(self, key: str, expires_in: int, content_type: str | None = None) -> str:
        """A URL that GETs exactly this object (ranges included) until it expires: the CDN's when one is set.

        Through the CDN the object answers with the type it was stored with (``content_type`` is S3's
        response override, which a cached object cannot vary by).
        """
        if self.cdn is not None:
            return self.cdn.url(self._key(key), expires_in)
        params: dict[str, str] = {"Bucket": self.bucket, "Key": self._key(key)}
        if content_type:
            params["ResponseContentType"] = content_type
        async with self._client() as s3:
            url: str = await s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)
        return url

"""Uploaded files: copied to disk in bounded chunks under a size limit; images judged by their bytes."""

from __future__ import annotations

from pathlib import Path

import anyio
from litestar.datastructures import UploadFile
from PIL import Image, UnidentifiedImageError

from audioverse.errors import FieldError, PayloadTooLarge, Unprocessable

COPY_CHUNK_BYTES = 1024 * 1024
IMAGE_FORMATS = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png"), "WEBP": ("webp", "image/webp")}
IMAGE_TYPES = {extension: mime for extension, mime in IMAGE_FORMATS.values()}


def required_file(value: object, field: str, what: str) -> UploadFile:
    """The multipart file ``field``; 422 naming it when it is missing or not a file."""
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else None
    if not isinstance(value, UploadFile):
        raise Unprocessable(
            f"Send the {what} as a multipart file field named `{field}`.",
            errors=[FieldError(field=field, message="A file is required.")],
        )
    return value


async def save_upload(upload: UploadFile, path: Path, limit: int, field: str) -> int:
    """Copy ``upload`` to ``path``; 413 past ``limit`` bytes, 422 when empty. Returns the size."""
    written = 0
    async with await anyio.open_file(path, "wb") as target:
        while chunk := await upload.read(COPY_CHUNK_BYTES):
            written += len(chunk)
            if written > limit:
                raise PayloadTooLarge(f"The `{field}` file is larger than the limit of {limit} bytes.")
            await target.write(chunk)
    if written == 0:
        raise Unprocessable(f"The `{field}` file is empty.", errors=[FieldError(field=field, message="Empty file.")])
    return written


def identify_image(path: Path, field: str) -> tuple[str, str]:
    """The extension and media type of a whole JPEG, PNG or WebP image; 422 for anything else."""
    not_an_image = Unprocessable(
        f"The `{field}` file must be a JPEG, PNG or WebP image.",
        errors=[FieldError(field=field, message="Not a readable JPEG, PNG or WebP image.")],
    )
    try:
        with Image.open(path) as image:
            image_format = image.format
            image.verify()
        with Image.open(path) as image:
            image.load()  # verify() misses truncated pixel data; decoding does not
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise not_an_image from exc
    if image_format not in IMAGE_FORMATS:
        raise not_an_image
    return IMAGE_FORMATS[image_format]


async def identify_image_async(path: Path, field: str) -> tuple[str, str]:
    return await anyio.to_thread.run_sync(identify_image, path, field)

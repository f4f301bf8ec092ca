"""The file system our static routes read: a path no file can have is a 404, not a 500."""

from __future__ import annotations

import errno
from typing import Any

from litestar.file_system import BaseLocalFileSystem
from litestar.types import FileInfo, PathType

NO_SUCH_FILE = frozenset({errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP, errno.EINVAL})
"""What ``stat`` says of a name too long, a file used as a folder or a link loop: nothing is there."""


class ServedFiles(BaseLocalFileSystem):
    """Litestar's local file system, except that a name no file can have reads as a missing file.

    Litestar turns any ``OSError`` but "not found" and "permission denied" into a 500, so a request for a
    256-character file name answered 500.
    """

    async def info(self, path: PathType, **kwargs: Any) -> FileInfo:
        try:
            return await super().info(path, **kwargs)
        except ValueError as exc:  # a NUL in the name
            raise FileNotFoundError(errno.ENOENT, "no such file", str(path)) from exc
        except OSError as exc:
            if exc.errno in NO_SUCH_FILE:
                raise FileNotFoundError(exc.errno, exc.strerror, str(path)) from exc
            raise


SERVED_FILES = ServedFiles()

"""File helpers for what the pilot writes for others and reads from others: atomic JSON, bounded regular reads."""

from __future__ import annotations

import errno
import json
import os
import stat
from typing import Any


def write_json_atomic(path: str, data: Any, mode: int = 0o644) -> None:
    """Write `data` as JSON under a temporary name and rename it: a reader never sees half a file."""
    temp = f"{path}.tmp{os.getpid()}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.write("\n")
        os.replace(temp, path)
    except BaseException:
        if os.path.lexists(temp):  # never leave a half-written temporary behind
            os.unlink(temp)
        raise


def read_regular(path: str, limit: int) -> bytes:
    """A file's bytes: opened non-blocking and read only if it is a regular file of at most `limit` bytes
    (a FIFO or a device planted under a job file's name must not block or flood the pilot)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes")
        return handle.read(limit + 1)

"""Reading files the payload controls (jobReport.json, payload.stderr, its error report, a results file).

The payload may replace any of them by a symlink to a file outside its work dir (a site secret, another user's
file a containerised payload cannot read itself), by a FIFO that blocks a reader forever, or by something huge.
So each is opened relative to a descriptor of the work dir, every path component with O_NOFOLLOW (a swapped
parent dir is refused too), non-blocking, and only a regular file is read, and never more than a bound.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Optional

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class UntrustedFileError(OSError):
    """The file is not a plain regular file inside the work dir, or is larger than allowed."""


def open_inside(workdir: str, name: str) -> int:
    """A read-only descriptor of the regular file `name` inside `workdir`, never leaving it.

    FileNotFoundError when it does not exist; UntrustedFileError for a symlink, a non-regular file, an absolute
    name or a '..' component.
    """
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or name.startswith("/") or ".." in parts:
        raise UntrustedFileError(errno.EINVAL, f"{name!r} does not name a file inside the work dir")
    dir_fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                                dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UntrustedFileError(exc.errno, f"{name}: {part} is not a plain directory") from None
                raise
            os.close(dir_fd)
            dir_fd = child
        try:
            fd = os.open(parts[-1], _FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UntrustedFileError(exc.errno, f"{name} is a symbolic link: not read") from None
            raise
    finally:
        os.close(dir_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UntrustedFileError(errno.EINVAL, f"{name} is not a regular file: not read")
    return fd


def read_inside(workdir: str, name: str, limit: int) -> Optional[bytes]:
    """The whole file (None if it does not exist); UntrustedFileError if unsafe or over `limit` bytes."""
    try:
        fd = open_inside(workdir, name)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UntrustedFileError(errno.EFBIG, f"{name} is larger than {limit} bytes: not read")
    return data


def tail_inside(workdir: str, name: str, limit: int) -> Optional[bytes]:
    """The last `limit` bytes of the file (None if it does not exist); UntrustedFileError if unsafe."""
    try:
        fd = open_inside(workdir, name)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(max(0, size - limit))
        return handle.read(limit)


def open_to_write(path: str, append: bool = False):
    """A text handle for a file the pilot writes in a work dir the payload shares: a symlink planted under that
    name is not followed (ELOOP), so the pilot never writes outside the work dir through it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_APPEND if append else os.O_TRUNC
    fd = os.open(path, flags | os.O_NONBLOCK, 0o644)  # non-blocking: a FIFO planted there cannot block us
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UntrustedFileError(errno.EINVAL, f"{path} is not a regular file: not written")
    return os.fdopen(fd, "a" if append else "w", encoding="ascii")

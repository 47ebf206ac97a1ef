"""Local file copy at kernel speed with the checksum of what was written, computed while the copy runs.

The bytes move inside the kernel (copy_file_range, else sendfile, else read/write), chunk by chunk; a second thread
reads each chunk back from the destination as soon as it is written and feeds the checksum, so the copy and the
checksum use two cores at once and the digest is that of the stored file, not of the source. adler32 runs at about
the speed of a page-cache copy, so doing both one after the other (or in one Python read/write loop, as before) took
two to three times as long as `cp`.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Callable, Optional

from .checksum import Digest

CHUNK = 8 << 20
READ = 1 << 20  # read-back piece: small enough to stay in the CPU cache between the read and the checksum
AHEAD = 4  # chunks the copy may run ahead of the checksum: bounds the unflushed data, and the wait on a stop
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF}


def _kernel_copy(src: int, dst: int, offset: int, count: int, mode: list) -> int:
    """Copy up to `count` bytes at `offset` (same offset in both files); bytes copied, 0 at EOF. `mode` holds the
    method that works here ("range", "sendfile", "rw"), downgraded on the first refusal."""
    while True:
        try:
            if mode[0] == "range":
                return os.copy_file_range(src, dst, count, offset, offset)
            if mode[0] == "sendfile":
                os.lseek(dst, offset, os.SEEK_SET)
                return os.sendfile(dst, src, offset, count)
            data = os.pread(src, count, offset)
            done = 0
            while done < len(data):
                done += os.pwrite(dst, data[done:], offset + done)
            return done
        except OSError as exc:
            if exc.errno not in _NO_KERNEL_COPY or mode[0] == "rw":
                raise
            mode[0] = "sendfile" if mode[0] == "range" else "rw"


class _Progress:
    """How far the copy got, shared by the copying and the checksumming thread."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.copied = 0
        self.checked = 0
        self.done = False  # the copy reached the end of the source
        self.failed = False  # the copy stopped early
        self.finished = False  # the checksum thread is over


def copy_file(src_path: str, dst_path: str, kind: str, progress: Optional[Callable[[int], None]] = None,
              sync: bool = False) -> Digest:
    """Copy src_path to dst_path (created or truncated, mode 0644 before umask) and return the `kind` digest of the
    bytes read back from dst_path. `progress(bytes_copied)` is called after each chunk and may raise to stop the
    copy (the exception propagates; the partial destination is left to the caller). sync=True flushes every chunk
    to the device as the copy goes (the checksum thread waits for it), so the file is durable when this returns."""
    digest = Digest(kind)
    src = os.open(src_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        dst = os.open(dst_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            _copy_fds(src, dst, digest, progress, sync)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return digest


def _copy_fds(src: int, dst: int, digest: Digest, progress, sync: bool) -> None:
    state = _Progress()
    errors: list = []
    checker = threading.Thread(target=_checksum_behind, args=(dst, digest, state, sync, errors),
                               name="copy-checksum", daemon=True)
    checker.start()
    mode = ["range"]
    offset = 0
    try:
        while True:
            count = _kernel_copy(src, dst, offset, CHUNK, mode)
            if count == 0:
                break
            offset += count
            with state.cond:
                state.copied = offset
                state.cond.notify_all()
                while offset - state.checked >= AHEAD * CHUNK and not state.finished:
                    state.cond.wait()
            if progress is not None:
                progress(offset)
            if errors:
                break
    except BaseException:
        with state.cond:
            state.failed = True
            state.cond.notify_all()
        checker.join()
        raise
    with state.cond:
        state.done = True
        state.cond.notify_all()
    checker.join()
    if errors:
        raise errors[0]
    if digest.size != offset:
        raise OSError(errno.EIO, f"read back {digest.size} bytes of {offset} written")


def _checksum_behind(dst: int, digest: Digest, state: _Progress, sync: bool, errors: list) -> None:
    """Read each copied chunk back from the destination and feed the digest (optionally after flushing it). Read,
    not mmap: a file truncated under a mapping kills the process with SIGBUS."""
    size = min(CHUNK, READ)
    buffer = bytearray(size)
    view = memoryview(buffer)
    checked = 0
    try:
        while True:
            with state.cond:
                while state.copied <= checked and not state.done and not state.failed:
                    state.cond.wait()
                if state.failed:
                    return
                end = state.copied
                if end <= checked and state.done:
                    return
            if sync:
                os.fdatasync(dst)
            while checked < end:
                count = os.preadv(dst, [view[:min(size, end - checked)]], checked)
                if count == 0:
                    raise OSError(errno.EIO, f"destination shorter than the {end} bytes written")
                digest.update(view[:count])
                checked += count
            with state.cond:
                state.checked = checked
                state.cond.notify_all()
    except Exception as exc:  # raised again by the copying thread
        errors.append(exc)
    finally:
        with state.cond:
            state.finished = True
            state.cond.notify_all()


def checksum_file(path: str, kind: str, progress: Optional[Callable[[int], None]] = None) -> Digest:
    """The `kind` digest of a local file: one read pass into a reused buffer (no allocation per chunk)."""
    digest = Digest(kind)
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        while True:
            count = os.readv(fd, [view])
            if not count:
                return digest
            digest.update(view[:count])
            if progress is not None:
                progress(digest.size)
    finally:
        os.close(fd)

"""Kernel-side local copies with the checksum of the written file (pilot/transfer/localcopy.py): every size around
the chunk boundaries, both checksum kinds, the fallbacks when copy_file_range or sendfile are refused, and failures
(a stop request, a full disk, a short read-back) that end the copy and its checksum thread cleanly."""

import errno
import hashlib
import os
import random
import threading
import time
import zlib

import pytest

from pilot.transfer import localcopy
from pilot.transfer.localcopy import checksum_file, copy_file

SMALL_CHUNK = 4096


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of 4 KiB, so that small files cross many chunk boundaries."""
    monkeypatch.setattr(localcopy, "CHUNK", SMALL_CHUNK)


def blob(size, seed=1):
    return random.Random(seed * 7919 + size).randbytes(size)


def expected(data, kind):
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}" if kind == "adler32" else hashlib.md5(data).hexdigest()


def no_checksum_thread_left():
    return not [t for t in threading.enumerate() if t.name == "copy-checksum"]


@pytest.mark.parametrize("size", [0, 1, SMALL_CHUNK - 1, SMALL_CHUNK, SMALL_CHUNK + 1, 5 * SMALL_CHUNK + 3])
@pytest.mark.parametrize("kind", ["adler32", "md5"])
def test_copy_and_checksum(tmp_path, size, kind):
    data = blob(size)
    (tmp_path / "src").write_bytes(data)
    digest = copy_file(str(tmp_path / "src"), str(tmp_path / "dst"), kind)
    assert (tmp_path / "dst").read_bytes() == data
    assert digest.size == size and digest.hexdigest() == expected(data, kind)
    assert checksum_file(str(tmp_path / "dst"), kind).hexdigest() == expected(data, kind)


def test_overwrites_a_longer_destination(tmp_path):
    (tmp_path / "src").write_bytes(b"short")
    (tmp_path / "dst").write_bytes(b"a much longer old content")
    assert copy_file(str(tmp_path / "src"), str(tmp_path / "dst"), "adler32").size == 5
    assert (tmp_path / "dst").read_bytes() == b"short"


@pytest.mark.parametrize("refused", [("copy_file_range",), ("copy_file_range", "sendfile")])
@pytest.mark.parametrize("code", [errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP])
def test_falls_back_when_the_kernel_refuses(tmp_path, monkeypatch, refused, code):
    """copy_file_range refused (another file system, an old kernel, a FUSE mount): sendfile; that refused too: a
    pread/pwrite loop. Same bytes and checksum either way, and the refused call is not tried again."""
    calls = {"copy_file_range": 0, "sendfile": 0}
    for name in refused:
        def refuse(*_args, _name=name):
            calls[_name] += 1
            raise OSError(code, os.strerror(code))
        monkeypatch.setattr(os, name, refuse)
    data = blob(3 * SMALL_CHUNK + 11)
    (tmp_path / "src").write_bytes(data)
    digest = copy_file(str(tmp_path / "src"), str(tmp_path / "dst"), "adler32")
    assert (tmp_path / "dst").read_bytes() == data and digest.hexdigest() == expected(data, "adler32")
    assert all(calls[name] == 1 for name in refused), calls


def test_a_real_error_is_not_hidden_by_a_fallback(tmp_path, monkeypatch):
    """A full disk is the disk's problem, not the method's: the error comes out, the checksum thread ends."""
    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "copy_file_range", full)
    (tmp_path / "src").write_bytes(blob(10_000))
    with pytest.raises(OSError) as caught:
        copy_file(str(tmp_path / "src"), str(tmp_path / "dst"), "adler32")
    assert caught.value.errno == errno.ENOSPC
    assert no_checksum_thread_left()


def test_progress_can_stop_the_copy(tmp_path):
    seen = []

    class Stop(Exception):
        pass

    def progress(copied):
        seen.append(copied)
        if copied >= 2 * SMALL_CHUNK:
            raise Stop()
    (tmp_path / "src").write_bytes(blob(10 * SMALL_CHUNK))
    with pytest.raises(Stop):
        copy_file(str(tmp_path / "src"), str(tmp_path / "dst"), "adler32", progress)
    assert seen == [SMALL_CHUNK, 2 * SMALL_CHUNK]
    assert no_checksum_thread_left()


def test_a_short_read_back_is_an_io_error(tmp_path, monkeypatch):
    """What cannot be read back from the destination was not stored: EIO, never a checksum of fewer bytes."""
    monkeypatch.setattr(os, "preadv", lambda *_args: 0)
    (tmp_path / "src").write_bytes(blob(3 * SMALL_CHUNK))
    with pytest.raises(OSError) as caught:
        copy_file(str(tmp_path / "src"), str(tmp_path / "dst"), "adler32")
    assert caught.value.errno == errno.EIO
    assert no_checksum_thread_left()


def test_sync_flushes_as_the_copy_goes(tmp_path, monkeypatch):
    flushed = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (flushed.append(fd), real(fd)))
    data = blob(4 * SMALL_CHUNK)
    (tmp_path / "src").write_bytes(data)
    digest = copy_file(str(tmp_path / "src"), str(tmp_path / "dst"), "adler32", sync=True)
    assert digest.hexdigest() == expected(data, "adler32") and flushed


def test_checksum_file_reports_progress(tmp_path):
    data = blob(3 * SMALL_CHUNK + 1)
    (tmp_path / "f").write_bytes(data)
    seen = []
    digest = checksum_file(str(tmp_path / "f"), "md5", seen.append)
    assert digest.hexdigest() == expected(data, "md5") and seen[-1] == len(data) and len(seen) == 4


def test_the_copy_never_runs_far_ahead_of_the_checksum(tmp_path, monkeypatch):
    """A slow read-back (a slow disk under sync) holds the copy back to AHEAD chunks: the unflushed data, and the
    time a stop request waits for the checksum thread, stay bounded."""
    read_up_to = [0]
    real = os.preadv

    def slow_preadv(fd, buffers, offset):
        time.sleep(0.002)
        count = real(fd, buffers, offset)
        read_up_to[0] = offset + count
        return count
    monkeypatch.setattr(os, "preadv", slow_preadv)
    gaps = []
    (tmp_path / "src").write_bytes(blob(40 * SMALL_CHUNK))
    copy_file(str(tmp_path / "src"), str(tmp_path / "dst"), "adler32", lambda copied: gaps.append(
        copied - read_up_to[0]))
    assert max(gaps) <= localcopy.AHEAD * SMALL_CHUNK, gaps

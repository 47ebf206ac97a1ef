"""Streaming adler32 and md5: one read of the file, 1 MiB at a time, whatever its size."""

from __future__ import annotations

import zlib
from typing import BinaryIO, Callable, Dict, Optional

CHUNK = 1 << 20
SUPPORTED = ("adler32", "md5")


class Digest:
    """Incremental checksum of one kind, fed chunk by chunk (so copy and checksum share one pass)."""

    def __init__(self, kind: str):
        if kind not in SUPPORTED:
            raise ValueError(f"unsupported checksum type {kind!r}")
        self.kind = kind
        self._adler = 1
        self._md5 = None
        if kind == "md5":
            import hashlib  # lazily: it loads libcrypto (3.5 MB), and adler32 is the default

            self._md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._md5 is not None:
            self._md5.update(chunk)
        else:
            self._adler = zlib.adler32(chunk, self._adler)

    def hexdigest(self) -> str:
        return self._md5.hexdigest() if self._md5 is not None else f"{self._adler & 0xFFFFFFFF:08x}"


def copy_stream(src: BinaryIO, dst: Optional[BinaryIO], kind: str,
                progress: Optional[Callable[[int], None]] = None) -> Digest:
    """Copy src to dst (if given) and return the checksum of what went through."""
    digest = Digest(kind)
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            return digest
        digest.update(chunk)
        if dst is not None:
            dst.write(chunk)
        if progress is not None:
            progress(digest.size)


def file_checksum(path: str, kind: str = "adler32") -> Dict[str, str]:
    """{kind: hex} of a local file."""
    with open(path, "rb") as handle:
        return {kind: copy_stream(handle, None, kind).hexdigest()}


def mismatch_code(kind: str, direction: str) -> int:
    """PanDA code for a checksum mismatch: adler32 1171 in / 1172 out, md5 1145 in / 1141 out."""
    if kind == "md5":
        return 1145 if direction == "in" else 1141
    return 1171 if direction == "in" else 1172

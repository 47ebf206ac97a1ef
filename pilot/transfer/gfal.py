"""The gfal copytool (gfal2: its Python bindings in-process when importable, else gfal-copy, gfal-sum, gfal-rm):
root://, https/davs/dav (WebDAV), srm...

After a stage-out the stored file's checksum is asked from the storage (`gfal-sum`); storages that cannot
compute one (nginx WebDAV answers "Function not implemented") are accepted on size and the local checksum,
with a warning. A stored file with the wrong checksum is removed.
"""

from __future__ import annotations

import logging
import os

from ..job import FileSpec
from .base import TransferFailure
from .checksum import Digest, mismatch_code
from .cli import transfer_timeout
from .gfal_api import operations
from .locality import ensure_online
from .remote import Progress, RemoteCopytool, local_digest
from .surl import rewrite

log = logging.getLogger(__name__)


def gfal_env(ctx) -> dict:
    """gfal-* are shell wrappers that need a Python with the gfal2 bindings (not the pilot's venv)."""
    env = {"GFAL_PYTHONBIN": os.environ.get("GFAL_PYTHONBIN", "/usr/bin/python3")}
    capath = ctx.args.capath or os.environ.get("X509_CERT_DIR")
    if capath:
        env["X509_CERT_DIR"] = capath
    return env


class GfalCopytool(RemoteCopytool):
    name = "gfal"
    schemes = ("root", "roots", "xroot", "davs", "dav", "https", "http", "srm", "gsiftp", "s3", "s3s", "file")

    def _get(self, spec: FileSpec, dest: str, ctx, kind: str) -> Digest:
        url = rewrite(self.source_url(spec, ctx), "gfal")  # LOFAR srm:// -> the SRM v2 form gfal needs
        spec.turl = url
        ensure_online(url, ctx, spec.lfn, gfal_env(ctx))  # a tape-only input fails fast, never a copy timeout
        timeout = transfer_timeout(ctx, spec.filesize)
        with Progress(spec, dest, ctx.config.file.progress_interval):
            operations(ctx, gfal_env(ctx)).copy(url, f"file://{os.path.abspath(dest)}", timeout, "in",
                                                f"stage-in of {spec.lfn}")
        return local_digest(dest, kind)

    def _put(self, spec: FileSpec, src: str, ctx, kind: str) -> str:
        url = self.destination_url(spec, ctx)
        local = local_digest(src, kind)
        timeout = transfer_timeout(ctx, local.size)
        ops = operations(ctx, gfal_env(ctx))
        # no create-parent: WebDAV servers create parents on PUT, and nginx refuses gfal's MKCOL of existing ones
        ops.copy(f"file://{os.path.abspath(src)}", url, timeout, "out", f"stage-out of {spec.lfn}")
        remote = self._remote_checksum(url, kind, ops)
        if remote is not None and remote != local.hexdigest():
            self._remove(url, ops)
            raise TransferFailure(mismatch_code(kind, "out"),
                                  f"{kind} of stored {spec.lfn} is {remote}, local {local.hexdigest()}")
        spec.filesize, spec.checksum, spec.turl = local.size, {kind: local.hexdigest()}, url
        return url

    @staticmethod
    def _remote_checksum(url: str, kind: str, ops):
        try:
            value = ops.checksum(url, kind, "out")
        except TransferFailure as exc:
            low = exc.diag.lower()
            if "not implemented" in low or "not supported" in low or "errno 38" in low or "errno 95" in low:
                log.warning("storage cannot compute %s of %s: verified by size and local checksum only", kind, url)
                return None
            raise
        return value.strip().lower().zfill(8 if kind == "adler32" else 32)

    @staticmethod
    def _remove(url: str, ops) -> None:
        try:
            ops.remove(url)
        except TransferFailure as exc:
            log.warning("could not remove %s: %s", url, exc.diag)

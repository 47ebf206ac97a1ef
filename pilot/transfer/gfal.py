"""The gfal copytool (gfal2's gfal-copy, gfal-sum, gfal-rm): root://, https/davs/dav (WebDAV), srm...

With gfal2's Python bindings importable ([File] gfal_bindings), a job's files go in one batch (batch.py: one
child process instead of one gfal-copy interpreter per file); srm:// and other tape-capable schemes stay on the
single-file path, which asks for their locality first.

After a stage-out the stored file's checksum is asked from the storage (`gfal-sum`); storages that cannot
compute one (nginx WebDAV answers "Function not implemented") are accepted on size and the local checksum,
with a warning. A stored file with the wrong checksum is removed.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

from ..job import FileSpec
from .base import TransferFailure
from .checksum import Digest, mismatch_code
from .cli import run_tool, transfer_timeout
from .locality import ensure_online, locality_schemes
from .remote import Progress, RemoteCopytool, local_digest
from .surl import rewrite

log = logging.getLogger(__name__)


def _seconds(timeout: float) -> str:
    """gfal-copy -t takes whole seconds, and 0 would mean no limit."""
    return str(max(1, int(timeout + 0.999)))


def gfal_env(ctx) -> dict:
    """gfal-* are shell wrappers that need a Python with the gfal2 bindings (not the pilot's venv)."""
    env = {"GFAL_PYTHONBIN": os.environ.get("GFAL_PYTHONBIN", "/usr/bin/python3")}
    capath = ctx.settings.capath or os.environ.get("X509_CERT_DIR")
    if capath:
        env["X509_CERT_DIR"] = capath
    return env


class GfalCopytool(RemoteCopytool):
    name = "gfal"
    schemes = ("root", "roots", "xroot", "davs", "dav", "https", "http", "srm", "gsiftp", "s3", "s3s", "file")
    batch_tool = "gfal"

    def _batch_source(self, spec: FileSpec, ctx) -> Optional[str]:
        if not ctx.config.file.gfal_bindings:
            return None
        url = super()._batch_source(spec, ctx)
        if url is None:
            return None
        url = rewrite(url, "gfal")
        scheme = url.split("://", 1)[0]
        if ctx.config.file.locality_check and scheme in locality_schemes(ctx):
            return None  # may be on tape: the single-file path checks first, a batch would wait for it
        return url

    def _store_batch(self, files, workdir: str, ctx, kind: str, job):
        return super()._store_batch(files, workdir, ctx, kind, job) if ctx.config.file.gfal_bindings else {}

    def _local_url(self, path: str) -> str:
        return f"file://{os.path.abspath(path)}"

    def _get(self, spec: FileSpec, dest: str, ctx, kind: str) -> Digest:
        url = rewrite(self.source_url(spec, ctx), "gfal")  # LOFAR srm:// -> the SRM v2 form gfal needs
        spec.turl = url
        ensure_online(url, ctx, spec.lfn, gfal_env(ctx))  # a tape-only input fails fast, never a copy timeout
        timeout = transfer_timeout(ctx, spec.filesize)
        with Progress(spec, dest, ctx.config.file.progress_interval):
            run_tool(["gfal-copy", "-f", "-t", _seconds(timeout), url, f"file://{os.path.abspath(dest)}"], ctx,
                     timeout, "in", f"stage-in of {spec.lfn}", gfal_env(ctx))
        return local_digest(dest, kind)

    def _put(self, spec: FileSpec, src: str, ctx, kind: str) -> str:
        url = self.destination_url(spec, ctx)
        local = local_digest(src, kind)
        timeout = transfer_timeout(ctx, local.size)
        env = gfal_env(ctx)
        # no -p: WebDAV servers create parents on PUT, and nginx refuses gfal's MKCOL of existing ones (409)
        run_tool(["gfal-copy", "-f", "-t", _seconds(timeout), f"file://{os.path.abspath(src)}", url], ctx,
                 timeout, "out", f"stage-out of {spec.lfn}", env)
        remote = self._remote_checksum(url, kind, ctx, env)
        if remote is not None and remote != local.hexdigest():
            self._remove(url, ctx, env)
            raise TransferFailure(mismatch_code(kind, "out"),
                                  f"{kind} of stored {spec.lfn} is {remote}, local {local.hexdigest()}")
        spec.filesize, spec.checksum, spec.turl = local.size, {kind: local.hexdigest()}, url
        return url

    @staticmethod
    def _remote_checksum(url: str, kind: str, ctx, env):
        try:
            out = run_tool(["gfal-sum", url, kind.upper()], ctx, 120, "out", f"checksum of {url}", env)
        except TransferFailure as exc:
            if "not implemented" in exc.diag.lower() or "not supported" in exc.diag.lower():
                log.warning("storage cannot compute %s of %s: verified by size and local checksum only", kind, url)
                return None
            raise
        words = out.strip().split()
        return words[-1].lower().zfill(8 if kind == "adler32" else 32) if words else None

    @staticmethod
    def _remove(url: str, ctx, env) -> None:
        try:
            run_tool(["gfal-rm", url], ctx, 60, "out", f"removing bad replica {url}", env)
        except TransferFailure as exc:
            log.warning("could not remove %s: %s", url, exc.diag)

"""The xrdcp copytool (xrootd-client): root:// and, through XrdHttp, https/davs storage.

Stage-out asks xrdcp to have the server compute adler32 and compare it with the local value (`--cksum
adler32:<value>`); on a mismatch xrdcp leaves the bad file on the server (exit 53), so the pilot removes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Dict
from urllib.parse import urlsplit

from ..job import FileSpec
from . import batch
from .base import TransferFailure
from .checksum import Digest, mismatch_code
from .cli import run_tool, transfer_timeout
from .remote import Progress, RemoteCopytool, local_digest

log = logging.getLogger(__name__)


def _xrd_split(url: str):
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path


class XrdcpCopytool(RemoteCopytool):
    name = "xrdcp"
    schemes = ("root", "roots", "xroot", "xroots")
    batch_tool = "xrootd"

    def _get(self, spec: FileSpec, dest: str, ctx, kind: str) -> Digest:
        url = self.source_url(spec, ctx)
        spec.turl = url
        with Progress(spec, dest, ctx.config.file.progress_interval):
            run_tool(["xrdcp", "-np", "-f", url, dest], ctx, transfer_timeout(ctx, spec.filesize), "in",
                     f"stage-in of {spec.lfn}")
        return local_digest(dest, kind)

    def _prefetch(self, files, staging: str, ctx, job) -> Dict[str, str]:
        """With the XRootD bindings: one child for all inputs (RemoteCopytool). Without: one xrdcp for all
        (`--parallel` width, one connection per server), which carries on past a failed file; either way what
        fails or does not verify goes through the single-file path for its own code."""
        if batch.bindings(self.batch_tool):
            return super()._prefetch(files, staging, ctx, job)
        urls: Dict[str, str] = {}
        for spec in files:
            url = self._batch_source(spec, ctx)
            if url and url.rsplit("/", 1)[-1] == spec.lfn:  # xrdcp names each copy after its source
                urls[spec.lfn] = url
        if len(urls) < 2:
            return {}
        timeout = transfer_timeout(ctx, sum(spec.filesize for spec in files if spec.lfn in urls))
        started = time.monotonic()
        os.makedirs(staging, exist_ok=True)
        failed = set()
        try:
            run_tool(["xrdcp", "-np", "-f", "--parallel", str(self._width(ctx, len(urls)))] + list(urls.values())
                     + [staging + "/"], ctx, timeout, "in", f"batched stage-in of {len(urls)} files", job=job)
        except TransferFailure as exc:
            log.info("batched stage-in: %s; failed files are fetched one by one", exc.diag)
            # which ones failed is not told: keep only copies the catalogue lets us verify
            failed = {spec.lfn for spec in files if spec.lfn in urls and not (spec.filesize or spec.checksum)}
        for lfn in failed:  # a failed copy may be partial: never offer it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(staging, lfn))
        arrived = {lfn: os.path.join(staging, lfn) for lfn in urls if os.path.isfile(os.path.join(staging, lfn))}
        for spec in files:
            if spec.lfn in arrived:
                spec.turl = urls[spec.lfn]
        log.info("batched stage-in (xrdcp): %d of %d files in %.2f s", len(arrived), len(urls),
                 time.monotonic() - started)
        return arrived

    def _put(self, spec: FileSpec, src: str, ctx, kind: str) -> str:
        url = self.destination_url(spec, ctx)
        local = local_digest(src, kind)
        argv = ["xrdcp", "-np", "-f", "-p"]
        if kind == "adler32":
            argv += ["--cksum", f"adler32:{local.hexdigest()}"]
        try:
            run_tool(argv + [src, url], ctx, transfer_timeout(ctx, local.size), "out", f"stage-out of {spec.lfn}")
        except TransferFailure as exc:
            if "checksum" in exc.diag.lower() or " exit 53" in exc.diag:
                self._remove(url, ctx)
                raise TransferFailure(mismatch_code(kind, "out"), exc.diag) from None
            raise
        spec.filesize, spec.checksum, spec.turl = local.size, {kind: local.hexdigest()}, url
        return url

    @staticmethod
    def _remove(url: str, ctx) -> None:
        host, path = _xrd_split(url)
        try:
            run_tool(["xrdfs", host, "rm", path], ctx, 60, "out", f"removing bad replica {url}")
        except TransferFailure:
            pass  # the transfer already failed with its own code; a leftover is logged by xrdfs

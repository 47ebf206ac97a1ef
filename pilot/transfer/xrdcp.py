"""The xrdcp copytool (xrootd-client): root:// and, through XrdHttp, https/davs storage.

Stage-out asks xrdcp to have the server compute adler32 and compare it with the local value (`--cksum
adler32:<value>`); on a mismatch xrdcp leaves the bad file on the server (exit 53), so the pilot removes it.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Dict
from urllib.parse import urlsplit

from ..job import FileSpec
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

    def _get(self, spec: FileSpec, dest: str, ctx, kind: str) -> Digest:
        url = self.source_url(spec, ctx)
        spec.turl = url
        with Progress(spec, dest, ctx.config.file.progress_interval):
            run_tool(["xrdcp", "-np", "-f", url, dest], ctx, transfer_timeout(ctx, spec.filesize), "in",
                     f"stage-in of {spec.lfn}")
        return local_digest(dest, kind)

    def _prefetch(self, files, staging: str, ctx, job) -> Dict[str, str]:
        """All inputs in one xrdcp (`--parallel` width, one connection per server): one process start and one
        login instead of one per file, which is what small files cost. xrdcp carries on past a failed file;
        those, and anything that does not verify, go through the single-file path for their own code."""
        urls: Dict[str, str] = {}
        for spec in files:
            try:
                url = self.source_url(spec, ctx)
            except TransferFailure:
                continue  # the single-file path reports it
            if url.rsplit("/", 1)[-1] == spec.lfn:  # xrdcp names each copy after its source
                urls[spec.lfn] = url
        if len(urls) < 2:
            return {}
        width = str(min(len(urls), int(ctx.config.file.transfer_width), 128))
        total = sum(spec.filesize for spec in files if spec.lfn in urls)
        started = time.monotonic()
        try:
            run_tool(["xrdcp", "-np", "-f", "--parallel", width] + list(urls.values()) + [staging + "/"], ctx,
                     transfer_timeout(ctx, total), "in", f"batched stage-in of {len(urls)} files", job=job)
        except TransferFailure as exc:
            log.info("batched stage-in: %s; failed files are fetched one by one", exc.diag)
        arrived = {lfn: os.path.join(staging, lfn) for lfn in urls if os.path.isfile(os.path.join(staging, lfn))}
        for spec in files:
            if spec.lfn in arrived:
                spec.turl = urls[spec.lfn]
        log.info("batched stage-in: %d of %d files in %.2f s", len(arrived), len(urls), time.monotonic() - started)
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

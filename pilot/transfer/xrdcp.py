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
from . import xrootd_batch
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
        width = min(len(urls), int(ctx.config.file.transfer_width), 128)
        timeout = transfer_timeout(ctx, sum(spec.filesize for spec in files if spec.lfn in urls))
        started = time.monotonic()
        failed = set()
        if xrootd_batch.available():  # in-process: no process start at all
            jobs = [(url, os.path.join(staging, lfn), "") for lfn, url in urls.items()]
            verdicts = xrootd_batch.copy_many(jobs, width, timeout, (ctx.abort, getattr(job, "kill", None)))
            failed = {lfn for lfn, problem in zip(urls, verdicts) if problem is not None}
        else:
            try:
                run_tool(["xrdcp", "-np", "-f", "--parallel", str(width)] + list(urls.values()) + [staging + "/"],
                         ctx, timeout, "in", f"batched stage-in of {len(urls)} files", job=job)
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
        log.info("batched stage-in: %d of %d files in %.2f s", len(arrived), len(urls), time.monotonic() - started)
        return arrived

    def _store_batch(self, files, workdir: str, ctx, kind: str, job) -> Dict[str, str]:
        """All outputs in one XRootD CopyProcess (bindings only: xrdcp cannot send many files to different
        directories), each checked by the server against its local adler32; bad copies are removed by XRootD."""
        if kind != "adler32" or not xrootd_batch.available():
            return {}
        plan = []
        for spec in files:
            src = os.path.join(workdir, spec.lfn)
            try:
                if not os.path.isfile(src) or os.path.islink(src):
                    continue
                plan.append((spec, src, self.destination_url(spec, ctx), local_digest(src, kind)))
            except (TransferFailure, OSError):
                continue  # the single-file path reports it
        if len(plan) < 2:
            return {}
        started = time.monotonic()
        timeout = transfer_timeout(ctx, sum(digest.size for *_, digest in plan))
        verdicts = xrootd_batch.copy_many([(src, url, digest.hexdigest()) for _, src, url, digest in plan],
                                          int(ctx.config.file.transfer_width), timeout,
                                          (ctx.abort, getattr(job, "kill", None)))
        stored = {}
        for (spec, _src, url, digest), problem in zip(plan, verdicts):
            if problem is None:
                spec.filesize, spec.checksum, spec.turl = digest.size, {kind: digest.hexdigest()}, url
                stored[spec.lfn] = url
            else:
                log.info("batched stage-out of %s: %s; storing it alone", spec.lfn, problem)
        log.info("batched stage-out: %d of %d files in %.2f s", len(stored), len(plan), time.monotonic() - started)
        return stored

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

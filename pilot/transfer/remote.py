"""What the command-line copytools (xrdcp, gfal) share: where a file is on storage, and local checksums."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Dict, Optional

from ..errors import PilotError
from ..job import FileSpec
from . import batch
from .base import STAGEIN_ACTIVITIES, Copytool, TransferFailure, output_activities, queue_storages
from .checksum import Digest, copy_stream
from .cli import transfer_timeout
from .storage import endpoint_for, file_url

log = logging.getLogger(__name__)

READ_PROTOCOLS = ("read_lan", "r", "pr", "default")
WRITE_PROTOCOLS = ("write_lan", "w", "pw", "default")


def local_digest(path: str, kind: str) -> Digest:
    with open(path, "rb") as handle:
        return copy_stream(handle, None, kind)


class RemoteCopytool(Copytool):
    """A copytool that moves files to and from storage URLs with an external tool."""

    schemes: tuple = ()  # URL schemes the tool can use; anything else is 1313 (it would be taken as a local path)
    batch_tool = ""  # "xrootd" / "gfal": the Python bindings a batch runs through (batch.py), when importable

    # --- batches through the bindings (one child process for all files; see batch.py) ---------------------
    def _batch_source(self, spec: FileSpec, ctx) -> Optional[str]:
        """The URL a batch reads `spec` from, or None to leave the file to the single-file path."""
        try:
            return self.source_url(spec, ctx)
        except TransferFailure:
            return None  # the single-file path reports it

    def _local_url(self, path: str) -> str:
        return path

    def _prefetch(self, files, staging: str, ctx, job) -> Dict[str, str]:
        if not (self.batch_tool and batch.bindings(self.batch_tool)):
            return {}
        urls = {spec.lfn: url for spec in files for url in [self._batch_source(spec, ctx)] if url}
        if len(urls) < 2:
            return {}
        started = time.monotonic()
        size = sum(spec.filesize for spec in files if spec.lfn in urls)
        os.makedirs(staging, exist_ok=True)
        jobs = [{"src": url, "dst": self._local_url(os.path.join(staging, lfn)), "adler32": "", "verify": False}
                for lfn, url in urls.items()]
        verdicts = batch.run_batch(self.batch_tool, jobs, self._width(ctx, len(jobs)), transfer_timeout(ctx, size),
                                   ctx, job, "in", f"batched stage-in of {len(jobs)} files")
        arrived = {}
        for (lfn, url), verdict in zip(urls.items(), verdicts):
            path = os.path.join(staging, lfn)
            if verdict and verdict["ok"] and os.path.isfile(path):
                arrived[lfn] = path
            elif os.path.lexists(path):
                os.unlink(path)  # a failed or unreported copy may be partial: never offer it
        for spec in files:
            if spec.lfn in arrived:
                spec.turl = urls[spec.lfn]
        log.info("batched stage-in (%s bindings): %d of %d files in %.2f s", self.batch_tool, len(arrived),
                 len(urls), time.monotonic() - started)
        return arrived

    def _store_batch(self, files, workdir: str, ctx, kind: str, job) -> Dict[str, str]:
        """All outputs in one child, each verified on the storage against its local adler32 (XRootD compares
        and removes a bad copy itself; gfal asks the stored checksum and removes a bad copy)."""
        if kind != "adler32" or not (self.batch_tool and batch.bindings(self.batch_tool)):
            return {}
        plan = []
        for spec in files:
            src = os.path.join(workdir, spec.lfn)
            try:
                if os.path.isfile(src) and not os.path.islink(src):
                    plan.append((spec, src, self.destination_url(spec, ctx), local_digest(src, kind)))
            except (TransferFailure, OSError):
                continue  # the single-file path reports it
        if len(plan) < 2:
            return {}
        started = time.monotonic()
        jobs = [{"src": self._local_url(src), "dst": url, "adler32": digest.hexdigest(), "verify": True}
                for _, src, url, digest in plan]
        timeout = transfer_timeout(ctx, sum(digest.size for *_, digest in plan))
        verdicts = batch.run_batch(self.batch_tool, jobs, self._width(ctx, len(jobs)), timeout, ctx, job, "out",
                                   f"batched stage-out of {len(jobs)} files")
        stored = {}
        for (spec, _src, url, digest), verdict in zip(plan, verdicts):
            if verdict and verdict["ok"]:
                if verdict.get("unverified"):
                    log.warning("storage cannot compute adler32 of %s: verified by size and local checksum only",
                                url)
                spec.filesize, spec.checksum, spec.turl = digest.size, {kind: digest.hexdigest()}, url
                stored[spec.lfn] = url
            else:
                log.info("batched stage-out of %s: %s; storing it alone", spec.lfn,
                         verdict["error"] if verdict else "not reported")
        log.info("batched stage-out (%s bindings): %d of %d files in %.2f s", self.batch_tool, len(stored),
                 len(plan), time.monotonic() - started)
        return stored

    @staticmethod
    def _width(ctx, count: int) -> int:
        return max(1, min(count, ctx.config.file.transfer_width, 128))

    def _check_scheme(self, url: str, spec: FileSpec) -> str:
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme not in self.schemes:
            raise TransferFailure(1313, f"{self.name} cannot use {scheme or 'plain path'} URLs ({url[:80]}) "
                                        f"for {spec.lfn}; it handles {', '.join(self.schemes)}")
        return url

    def source_url(self, spec: FileSpec, ctx) -> str:
        if spec.turl and "://" in spec.turl:
            return self._check_scheme(spec.turl, spec)
        names = [spec.ddmendpoint] + queue_storages(ctx, STAGEIN_ACTIVITIES)
        found = endpoint_for(ctx.storage, [n for n in names if n], READ_PROTOCOLS, f"stage-in of {spec.lfn}")
        if not found:
            raise TransferFailure(1100, f"no replica for {spec.lfn}: no storage endpoint among {names} in the "
                                        f"storage data (--storagedata-url)")
        spec.ddmendpoint = found[0].name
        return self._check_scheme(file_url(found[1], spec.scope, spec.lfn, found[0], ctx.queuedata.name), spec)

    def destination_url(self, spec: FileSpec, ctx) -> str:
        names = [spec.ddmendpoint] + queue_storages(ctx, output_activities(spec))
        try:
            found = endpoint_for(ctx.storage, [n for n in names if n], WRITE_PROTOCOLS, f"stage-out of {spec.lfn}")
        except PilotError as exc:
            raise TransferFailure(exc.code, exc.diag) from None
        if not found:
            raise TransferFailure(1133, f"no storage for {spec.lfn}: none of {names} is in the storage data")
        spec.ddmendpoint = found[0].name
        return self._check_scheme(file_url(found[1], spec.scope or "pilot", spec.lfn, found[0], ctx.queuedata.name),
                                  spec)


class Progress:
    """Logs a long download's progress (bytes, rate, ETA) every [File] progress_interval seconds."""

    def __init__(self, spec: FileSpec, path: str, interval: float):
        self.spec, self.path, self.interval = spec, path, interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        started = time.monotonic()
        while not self._done.wait(self.interval):
            try:
                size = os.path.getsize(self.path)
            except OSError:
                size = 0
            rate = size / max(time.monotonic() - started, 1e-6)
            total = self.spec.filesize
            eta = f", ETA {(total - size) / rate:.0f} s" if total and rate > 0 else ""
            log.info("transfer %s: %d/%s bytes, %.1f MB/s%s", self.spec.lfn, size, total or "?", rate / 1e6, eta)

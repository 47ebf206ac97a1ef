"""What the command-line copytools (xrdcp, gfal) share: where a file is on storage, and local checksums."""

from __future__ import annotations

import logging
import os
import threading
import time

from ..errors import PilotError
from ..job import FileSpec
from .base import STAGEIN_ACTIVITIES, STAGEOUT_ACTIVITIES, Copytool, TransferFailure
from .checksum import Digest, copy_stream
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

    def _check_scheme(self, url: str, spec: FileSpec) -> str:
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme not in self.schemes:
            raise TransferFailure(1313, f"{self.name} cannot use {scheme or 'plain path'} URLs ({url[:80]}) "
                                        f"for {spec.lfn}; it handles {', '.join(self.schemes)}")
        return url

    def source_url(self, spec: FileSpec, ctx) -> str:
        if spec.turl and "://" in spec.turl:
            return self._check_scheme(spec.turl, spec)
        names = [spec.ddmendpoint] + self._queue_storages(ctx, STAGEIN_ACTIVITIES)
        found = endpoint_for(ctx.storage, [n for n in names if n], READ_PROTOCOLS, f"stage-in of {spec.lfn}")
        if not found:
            raise TransferFailure(1100, f"no replica for {spec.lfn}: no storage endpoint among {names} in the "
                                        f"storage data (--storagedata-url)")
        spec.ddmendpoint = found[0].name
        return self._check_scheme(file_url(found[1], spec.scope, spec.lfn), spec)

    def destination_url(self, spec: FileSpec, ctx) -> str:
        activities = ("pl",) + STAGEOUT_ACTIVITIES if spec.role == "log" else STAGEOUT_ACTIVITIES
        names = [spec.ddmendpoint] + self._queue_storages(ctx, activities)
        try:
            found = endpoint_for(ctx.storage, [n for n in names if n], WRITE_PROTOCOLS, f"stage-out of {spec.lfn}")
        except PilotError as exc:
            raise TransferFailure(exc.code, exc.diag) from None
        if not found:
            raise TransferFailure(1133, f"no storage for {spec.lfn}: none of {names} is in the storage data")
        spec.ddmendpoint = found[0].name
        return self._check_scheme(file_url(found[1], spec.scope or "pilot", spec.lfn), spec)

    @staticmethod
    def _queue_storages(ctx, activities):
        for activity in activities:
            names = ctx.queuedata.astorages.get(activity)
            if names:
                return list(names)
        return []


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

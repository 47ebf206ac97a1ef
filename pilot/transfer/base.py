"""Copytool interface, registry by name, and activity -> copytool resolution from queue data.

A copytool only moves bytes (`_get`/`_put`); the base class owns everything that must be the same for all of
them: per-file status and codes, size and checksum verification against the catalogue, and the rule that a
failed file never leaves a file under its final name.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from typing import Dict, List, Optional, Sequence

from ..errors import PilotError, format_diag
from ..job import FileSpec
from .checksum import Digest, copy_stream, mismatch_code

log = logging.getLogger(__name__)

# Activity keys Pilot 3 and CRIC use in acopytools/astorages. Anything else is a configuration error.
KNOWN_ACTIVITIES = frozenset({
    "default", "read_lan", "read_wan", "write_lan", "write_wan", "pr", "pw", "pl", "pls", "es_events",
    "es_failover", "es_events_read", "read_lan_analysis", "read_wan_analysis",
})

# failures worth one more try: generic tool errors, server-side errors, services away for a moment
TRANSIENT_CODES = frozenset({1099, 1137, 1362, 1324, 1316, 1327})

STAGEIN_ACTIVITIES = ("read_lan", "pr", "default")
STAGEOUT_ACTIVITIES = ("write_lan", "pw", "default")
LOG_ACTIVITIES = ("pl", "write_lan", "pw", "default")


def queue_storages(ctx, activities: Sequence[str]) -> List[str]:
    """The queue's storage endpoints (astorages) for the first of `activities` that names any."""
    for activity in activities:
        names = ctx.queuedata.astorages.get(activity)
        if names:
            return list(names)
    return []


def output_activities(spec: FileSpec) -> Sequence[str]:
    return ("pl",) + STAGEOUT_ACTIVITIES if spec.role == "log" else STAGEOUT_ACTIVITIES


def fired_stop(ctx, job=None):
    """The trigger that means "stop transferring" (pilot abort, then the job's kill) if one has fired."""
    return next((t for t in (ctx.abort, getattr(job, "kill", None)) if t is not None and t.is_set()), None)


class TransferFailure(Exception):
    """One file failed: carries its PanDA code. retry=False: trying again cannot help (e.g. a tape-only file)."""

    def __init__(self, code: int, diag: str, retry: bool = True):
        super().__init__(diag)
        self.code = code
        self.diag = diag
        self.retry = retry
        self.output = ""  # a tool's output when it failed (run_tool), for callers that read partial results


def copytool_names(acopytools: Dict[str, List[str]], activities: Sequence[str]) -> List[str]:
    """Copytools for the first of `activities` that the queue defines; unknown activity keys are 1341."""
    unknown = sorted(set(acopytools) - KNOWN_ACTIVITIES)
    if unknown:
        raise PilotError(1341, f"queue data acopytools has unknown activities {unknown}; "
                               f"known: {sorted(KNOWN_ACTIVITIES)}")
    for activity in activities:
        if acopytools.get(activity):
            return list(acopytools[activity])
    raise PilotError(1133, f"queue data acopytools defines none of the activities {list(activities)}")


def get_copytool(name: str, setup: Optional[dict] = None) -> "Copytool":
    """The copytool called `name` (pilot.registry.COPYTOOLS; unknown names are 1323)."""
    from ..registry import COPYTOOLS

    return COPYTOOLS.create(name, setup or {})


def os_error_code(exc: OSError, direction: str) -> int:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return 1098 if direction == "in" else 1333
    if exc.errno == errno.ENOENT and direction == "in":
        return 1331
    return 1099 if direction == "in" else 1137


class Copytool:
    """Moves files between storage and the job work dir. Subclasses implement `_get` and `_put`."""

    name = "base"

    def __init__(self, setup: dict):
        self.setup = setup

    # --- to implement -------------------------------------------------------------------------------------
    def _get(self, spec: FileSpec, dest: str, ctx, kind: str) -> Digest:
        """Fetch spec into `dest` (a temporary name); return the digest of what was written."""
        raise NotImplementedError

    def _put(self, spec: FileSpec, src: str, ctx, kind: str) -> str:
        """Store `src` as spec; verify it arrived intact against spec.checksum; return the SURL."""
        raise NotImplementedError

    # --- shared behaviour ---------------------------------------------------------------------------------
    def _prefetch(self, files: List[FileSpec], staging: str, ctx, job) -> Dict[str, str]:
        """Optional: fetch many inputs at once into `staging` (to create); {lfn: path} of what arrived. Nothing is
        trusted: every file is verified like a single download, and whatever is missing or wrong is fetched
        again on its own, so a batch can only save time, never change an outcome."""
        return {}

    def copy_in(self, files: List[FileSpec], workdir: str, ctx, kind: str = "adler32", job=None) -> None:
        staged: Dict[str, str] = {}
        staging = os.path.join(workdir, ".stagein-batch")  # created by a _prefetch that uses it
        if len(files) > 1 and ctx.config.file.transfer_width > 1:
            staged = self._prefetch(files, staging, ctx, job)
        try:
            self._each(files, lambda spec: self._copy_in_one(spec, workdir, ctx, kind, job, staged.get(spec.lfn)),
                       ctx)
        finally:
            if os.path.isdir(staging):
                shutil.rmtree(staging, ignore_errors=True)

    def _store_batch(self, files: List[FileSpec], workdir: str, ctx, kind: str, job) -> Dict[str, str]:
        """Optional: store many outputs at once, each verified on the storage against its local checksum;
        {lfn: surl} of those stored (with spec.filesize/checksum/turl set). The rest go one by one."""
        return {}

    def copy_out(self, files: List[FileSpec], workdir: str, ctx, kind: str = "adler32", job=None) -> None:
        stored: Dict[str, str] = {}
        if len(files) > 1 and ctx.config.file.transfer_width > 1:
            stored = self._store_batch(files, workdir, ctx, kind, job)
        self._each(files, lambda spec: self._copy_out_one(spec, workdir, ctx, kind, job, stored.get(spec.lfn)), ctx)

    @staticmethod
    def _each(files: List[FileSpec], work, ctx) -> None:
        """Transfer files in parallel, [File] transfer_width at a time (Pilot 3 moves them one by one)."""
        width = max(1, min(len(files), ctx.config.file.transfer_width))
        if width == 1:
            for spec in files:
                work(spec)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="transfer") as pool:
            list(pool.map(work, files))

    @staticmethod
    def _retrying(action, spec: FileSpec, ctx, what: str):
        """Run action(); more tries ([File] transfer_attempts; at stage-out at least --stageout-attempts) when
        the failure may be transient."""
        attempts = ctx.config.file.transfer_attempts
        settings = getattr(ctx, "settings", None)  # contexts built for a copytool alone have no command line
        if what == "stage-out" and settings is not None:
            attempts = max(attempts, settings.stageout_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return action()
            except TransferFailure as exc:
                if attempt == attempts or exc.code not in TRANSIENT_CODES or not exc.retry or ctx.abort.is_set():
                    raise
                log.warning("%s of %s, attempt %d/%d failed (%s): trying again", what, spec.lfn, attempt, attempts,
                            exc.diag)
        raise AssertionError("unreachable")  # pragma: no cover

    def _fetch(self, spec: FileSpec, temp: str, ctx, want: str, staged: Optional[str]) -> Digest:
        """The batch's copy when it verifies, else a download of this file alone (with retries)."""
        if staged and os.path.isfile(staged):
            os.replace(staged, temp)
            with open(temp, "rb") as handle:
                digest = copy_stream(handle, None, want)
            expected = spec.checksum.get(digest.kind)
            if (not spec.filesize or digest.size == spec.filesize) and (not expected or expected == digest.hexdigest()):
                return digest
            log.warning("batched copy of %s did not verify (%d bytes, %s %s): fetching it alone", spec.lfn,
                        digest.size, digest.kind, digest.hexdigest())
            os.unlink(temp)
        return self._retrying(lambda: self._get(spec, temp, ctx, want), spec, ctx, "stage-in")

    def _copy_in_one(self, spec: FileSpec, workdir: str, ctx, kind: str, job, staged: Optional[str] = None) -> None:
        stop = fired_stop(ctx, job)
        if stop is not None:
            self._mark(spec, stop.code, "stage-in interrupted: " + stop.reason)
            return
        final = os.path.join(workdir, spec.lfn)
        temp = final + ".part"
        started = time.monotonic()
        try:
            want = next(iter(spec.checksum), kind)
            digest = self._fetch(spec, temp, ctx, want, staged)
            if spec.filesize and digest.size != spec.filesize:
                raise TransferFailure(1099, f"size mismatch for {spec.lfn}: got {digest.size} bytes, "
                                            f"catalogue says {spec.filesize}")
            expected = spec.checksum.get(digest.kind)
            if expected and expected != digest.hexdigest():
                raise TransferFailure(mismatch_code(digest.kind, "in"),
                                      f"{digest.kind} mismatch for {spec.lfn}: local {digest.hexdigest()}, "
                                      f"catalogue {expected}")
            if os.path.lexists(temp):
                os.replace(temp, final)
            spec.filesize = spec.filesize or digest.size
            spec.checksum.setdefault(digest.kind, digest.hexdigest())
            spec.status, spec.status_code, spec.copytool = "transferred", 0, self.name
        except TransferFailure as exc:
            self._mark(spec, exc.code, exc.diag)
        except OSError as exc:
            self._mark(spec, os_error_code(exc, "in"), f"stage-in of {spec.lfn} failed: {exc}")
        finally:
            spec.transfer_seconds = time.monotonic() - started
            if spec.status != "transferred" and os.path.lexists(temp):
                os.unlink(temp)
        self._log(spec, "in")

    def _copy_out_one(self, spec: FileSpec, workdir: str, ctx, kind: str, job, stored: Optional[str] = None) -> None:
        src = os.path.join(workdir, spec.lfn)
        started = time.monotonic()
        try:
            if not os.path.isfile(src) or os.path.islink(src):
                raise TransferFailure(1165, f"output file {spec.lfn} is missing or not a regular file")
            spec.surl = stored or self._retrying(lambda: self._put(spec, src, ctx, kind), spec, ctx, "stage-out")
            spec.status, spec.status_code, spec.copytool = "transferred", 0, self.name
        except TransferFailure as exc:
            self._mark(spec, exc.code, exc.diag)
        except OSError as exc:
            self._mark(spec, os_error_code(exc, "out"), f"stage-out of {spec.lfn} failed: {exc}")
        finally:
            spec.transfer_seconds = time.monotonic() - started
        self._log(spec, "out")

    @staticmethod
    def _mark(spec: FileSpec, code: int, diag: str) -> None:
        spec.status, spec.status_code, spec.diag = "failed", code, format_diag(code, diag)

    def _log(self, spec: FileSpec, direction: str) -> None:
        if spec.status == "transferred":
            rate = spec.filesize / spec.transfer_seconds / 1e6 if spec.transfer_seconds > 0 else 0.0
            log.info("stage-%s %s: %s, %d bytes, %s, %.3f s (%.1f MB/s)", direction, self.name, spec.lfn,
                     spec.filesize, spec.checksum, spec.transfer_seconds, rate)
        else:
            log.error("stage-%s %s: %s failed with %d: %s", direction, self.name, spec.lfn, spec.status_code,
                      spec.diag)

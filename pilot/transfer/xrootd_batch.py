"""Many files in one go through the XRootD client library, when its Python bindings are importable.

A small file costs the xrdcp command a process start, library loading and a login; in one CopyProcess all files
share a process and a connection per server, so a job's hundred small outputs cost little more than one. The
bindings are optional (sites have them with the xrootd client; `python3-xrootd` on Debian/EL): without them
the copytool moves files one xrdcp at a time, as before. Callers never trust a batch blindly: whatever a batch
did not do, or did wrong, goes through the single-file path, which decides the file's PanDA code.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from typing import List, Optional, Sequence, Tuple

log = logging.getLogger(__name__)


def available() -> bool:
    try:
        return importlib.util.find_spec("XRootD") is not None and importlib.util.find_spec("XRootD.client") is not None
    except (ImportError, ValueError):
        return False


def copy_many(jobs: Sequence[Tuple[str, str, str]], width: int, timeout: float, stops=()) -> List[Optional[str]]:
    """Copy (source, target, adler32-or-"") jobs, `width` at a time; per job None (done) or the error text.

    A non-empty adler32 makes the server compare the stored file with it and remove the file on a mismatch.
    The whole batch is cancelled when `timeout` passes or any of `stops` (pilot abort, job kill) fires.
    """
    from XRootD.client import CopyProcess
    from XRootD.client.utils import CopyProgressHandler

    deadline = time.monotonic() + timeout

    class Watch(CopyProgressHandler):
        def __init__(self):
            super().__init__()
            self.cancelled = ""

        def should_cancel(self, job_id):  # polled by the library while it copies
            stop = next((t for t in stops if t is not None and t.is_set()), None)
            if stop is not None:
                self.cancelled = f"interrupted ({stop.reason})"
            elif time.monotonic() > deadline:
                self.cancelled = f"timed out after {timeout:.0f} s"
            return bool(self.cancelled)

    process = CopyProcess()
    process.parallel(max(1, min(width, 128)))
    for source, target, adler32 in jobs:
        checks = {"checksummode": "target", "checksumtype": "adler32", "checksumpreset": adler32,
                  "rmBadCksum": True} if adler32 else {}
        process.add_job(source, target, force=True, mkdir=True, **checks)
    status = process.prepare()
    if not status.ok:
        return [f"batch not prepared: {status.message}"] * len(jobs)
    watch = Watch()
    _status, results = process.run(watch)
    verdicts: List[Optional[str]] = []
    for index in range(len(jobs)):
        result = results[index] if index < len(results) else {}
        job_status = result.get("status")
        if job_status is not None and job_status.ok and not watch.cancelled:
            verdicts.append(None)
        else:
            text = watch.cancelled or (job_status.message if job_status is not None else "not run")
            verdicts.append(" ".join(str(text).split()))
    return verdicts

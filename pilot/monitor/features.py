"""WLCG machine/job features: when the node will be taken away ($MACHINEFEATURES/shutdowntime,
$JOBFEATURES/shutdowntime_job).

Sites that drain a node (a reboot, the end of a VM's or a cloud instance's lease) announce it by writing an epoch
time into one of these files; the variables name a directory or an http(s) URL of the same layout. The earliest
time found is a hard end for this pilot: it takes no job that cannot finish before it and aborts a running one in
time to report it (Pilot 3 reads the same files once a minute and stops 10 minutes before). Values are read
afresh on every look: the file usually appears while the pilot already runs.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Mapping, Optional, Tuple

log = logging.getLogger(__name__)

# (environment variable, file name) of each announcement, in the order they are read
SHUTDOWN_FILES = (("MACHINEFEATURES", "shutdowntime"), ("JOBFEATURES", "shutdowntime_job"))
MAX_VALUE_BYTES = 64


def read_feature(base: str, name: str, timeout: float = 5.0) -> Optional[str]:
    """The stripped content of feature `name` under `base` (a directory or an http(s) URL); None when absent."""
    if base.startswith(("http://", "https://")):
        try:
            import urllib.request  # lazily: ~6 MB, only for features given as URLs

            with urllib.request.urlopen(f"{base.rstrip('/')}/{name}", timeout=timeout) as reply:  # noqa: S310
                return reply.read(MAX_VALUE_BYTES).decode("ascii", "replace").strip()
        except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors: 404 = not announced
            log.debug("machine/job feature %s/%s not read: %s", base, name, exc)
            return None
    path = os.path.join(base, name)
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_VALUE_BYTES).decode("ascii", "replace").strip()
    except OSError:
        return None


def shutdown_time(environ: Optional[Mapping[str, str]] = None) -> Optional[Tuple[float, str]]:
    """(epoch, where it was announced) of the earliest announced shutdown; None when nothing is announced.

    A value that is not a number is logged and ignored (a half-written file is read again next time).
    """
    environ = os.environ if environ is None else environ
    earliest: Optional[Tuple[float, str]] = None
    for variable, name in SHUTDOWN_FILES:
        base = environ.get(variable, "")
        if not base:
            continue
        value = read_feature(base, name)
        if not value:
            continue
        try:
            when = float(value)
        except ValueError:
            log.warning("$%s/%s holds %r, not an epoch time: ignored", variable, name, value[:20])
            continue
        if when > 0 and (earliest is None or when < earliest[0]):
            earliest = (when, f"${variable}/{name}")
    return earliest


class ShutdownWatch:
    """Looks at the announcements at most once per `interval` and lowers the pilot's lifetime to end before them.

    The lifetime is the one clock every stage already obeys: with less than min_job_time left no job is
    requested, and the supervisor aborts the running job `lifetime_margin` before the end with 1213 (the node's
    time is up, as for the batch system's limit), then exits 81.
    """

    def __init__(self, ctx, interval: float):
        self.ctx = ctx
        self.interval = interval
        self.enabled = any(os.environ.get(variable) for variable, _name in SHUTDOWN_FILES)
        self._next = 0.0
        self.announced: Optional[Tuple[float, str]] = None

    def poll(self) -> bool:
        """Read the announcements if due; True when they shortened the lifetime."""
        if not self.enabled or time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + self.interval
        found = shutdown_time()
        if found is None:
            return False
        when, where = found
        # the lifetime counts from the pilot's start: convert the wall-clock epoch; the supervisor aborts
        # lifetime_margin before its end, which must fall shutdown_margin before the shutdown
        cfg = self.ctx.config.pilot
        lifetime = when - self.ctx.started - cfg.shutdown_margin + cfg.lifetime_margin
        if lifetime >= self.ctx.lifetime:
            return False
        if self.announced is None or self.announced[0] != when:
            log.warning("node shutdown announced in %s for %s UTC (in %.0f s): lifetime cut from %.0f s to %.0f s",
                        where, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when)), when - time.time(),
                        self.ctx.lifetime, lifetime)
        self.announced = found
        self.ctx.lifetime = lifetime
        return True

    def wait_limit(self) -> Optional[float]:
        """Longest the supervisor may sleep before the next look (None when no features are configured)."""
        if not self.enabled:
            return None
        return max(0.0, self._next - time.monotonic())

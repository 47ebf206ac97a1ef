"""Is CVMFS usable on this node: each repository the queue needs is mounted and readable, and not stale.

Pilot 3 (ATLAS plug-in) checks that a list of mount points exists and reads a "last update" file that CERN's
stratum 0 rewrites about every hour (`/cvmfs/sft.cern.ch/lcg/lastUpdate`, one line `date | host | epoch`): a node
whose CVMFS client no longer refreshes its catalogs still shows the files, only old ones. Here both are settings
([Pilot] cvmfs_*), the root is configurable (tests use a directory of their own), and an age limit turns an old
timestamp into a failure instead of a log line. A failure is 1377 CVMFSISNOTALIVE (exit 64), as in Pilot 3.

An automounted repository can hang on first access when the node's CVMFS is broken: each look runs in a daemon
thread with a time limit, and a look that does not come back is a failure, never a hung pilot.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, List, Optional, Tuple, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
CODE = 1377


class _Hung(Exception):
    pass


def _bounded(call: Callable[[], T], timeout: float) -> T:
    """call() in a daemon thread; _Hung if it takes longer than `timeout` (the thread is left to the kernel)."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = call()
        except OSError as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name="cvmfs-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise _Hung(f"no answer within {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def last_update(path: str) -> Optional[int]:
    """The epoch in a `date | host | epoch` last-update file (the last field; a bare epoch works too)."""
    with open(path, encoding="ascii", errors="replace") as handle:
        line = handle.readline(256)
    field = line.split("|")[-1].strip()
    return int(field) if field.isdigit() else None


def check(root: str, repositories: List[str], last_update_file: str, max_age: float,
          timeout: float = 60.0, now: Optional[float] = None) -> Optional[Tuple[int, str]]:
    """(1377, diag) when a repository is missing, unreadable or hung, or the last update is older than `max_age`
    seconds (0: only logged); None when CVMFS is usable. With neither repositories nor a last-update file, the
    root must at least be a directory."""
    if not repositories and not last_update_file:
        try:
            if not _bounded(lambda: os.path.isdir(root), timeout):
                return CODE, f"CVMFS root {root} is not a directory"
        except _Hung as exc:
            return CODE, f"CVMFS root {root} hangs: {exc}"
        return None
    for repo in repositories:
        path = os.path.join(root, repo)
        try:
            entries = _bounded(lambda path=path: os.listdir(path), timeout)
        except _Hung as exc:
            return CODE, f"CVMFS repository {path} hangs: {exc}"
        except OSError as exc:
            return CODE, f"CVMFS repository {path} is not available: {exc.strerror or exc}"
        if not entries:  # an automount point that did not mount shows as an empty directory
            return CODE, f"CVMFS repository {path} is empty (not mounted)"
        log.info("CVMFS repository %s is available", path)
    if last_update_file:
        path = last_update_file if os.path.isabs(last_update_file) else os.path.join(root, last_update_file)
        try:
            stamp = _bounded(lambda: last_update(path), timeout)
        except _Hung as exc:
            return CODE, f"CVMFS last-update file {path} hangs: {exc}"
        except (OSError, ValueError) as exc:
            return CODE, f"CVMFS last-update file {path} is not readable: {getattr(exc, 'strerror', None) or exc}"
        if stamp is None:
            return CODE, f"CVMFS last-update file {path} holds no timestamp"
        age = (now or time.time()) - stamp
        log.info("CVMFS last updated %s UTC (%.0f s ago)", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp)),
                 age)
        if max_age and age > max_age:
            return CODE, f"CVMFS is stale: last update {age / 3600:.1f} h ago (> {max_age / 3600:.1f} h), {path}"
    return None


def wanted(settings, config, queuedata) -> bool:
    """Pilot 3's rule plus the queue: not with -b or NO_CVMFS_OK, and only when the queue says it uses CVMFS
    (is_cvmfs) or repositories are configured."""
    if not settings.cvmfs or os.environ.get("NO_CVMFS_OK"):
        return False
    return bool(queuedata.raw.get("is_cvmfs")) or bool(repositories(config))


def repositories(config) -> List[str]:
    return [repo.strip() for repo in config.pilot.cvmfs_repositories.split(",") if repo.strip()]


def check_node(config) -> Optional[Tuple[int, str]]:
    cfg = config.pilot
    return check(cfg.cvmfs_root, repositories(config), cfg.cvmfs_last_update_file, cfg.cvmfs_max_age,
                 cfg.cvmfs_timeout)

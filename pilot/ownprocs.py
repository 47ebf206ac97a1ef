"""The processes the pilot starts for itself (copytools, transfer workers, debug commands).

The pilot is a child subreaper, so every process started below it stays below it, whatever it does to its
session, process group or environment. A payload's processes are therefore found as "below the pilot and not
in the subtree of one of these helpers": membership that the payload cannot erase. The set is process-wide by
nature (it mirrors the pilot's own children), so it lives here, guarded by one lock that a membership scan also
holds, so that a helper started during a scan is never mistaken for a payload orphan.
"""

from __future__ import annotations

import subprocess
import threading
from contextlib import contextmanager
from typing import Iterator, List, Set

_lock = threading.RLock()
_helpers: Set[int] = set()


def start(argv: List[str], **kwargs) -> subprocess.Popen:
    """subprocess.Popen(argv, **kwargs), registered as a helper until `done(proc)` is called."""
    with _lock:
        proc = subprocess.Popen(argv, **kwargs)
        _helpers.add(proc.pid)
    return proc


def done(proc: subprocess.Popen) -> None:
    """The helper has been waited for: its pid may be reused by anyone now."""
    with _lock:
        _helpers.discard(proc.pid)


@contextmanager
def helper(argv: List[str], **kwargs) -> Iterator[subprocess.Popen]:
    """`start` as a context manager; the helper is forgotten (after being killed and reaped) on exit."""
    proc = start(argv, **kwargs)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        done(proc)


@contextmanager
def scanning() -> Iterator[Set[int]]:
    """Hold the registry still while the caller lists processes; yields the helper pids."""
    with _lock:
        yield set(_helpers)

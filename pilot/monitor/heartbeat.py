"""Heartbeat scheduling, and the server's debug commands.

One thread for all jobs of the pilot: it sleeps until the next heartbeat is due (or a job is added or removed)
and calls `send(jobid)` for each job that is due; what is sent, and what the server answers, is the reporter's
business (pilot/reporter.py). Default interval 1800 s ([Pilot] heartbeat), 60 s in debug mode ([Pilot]
debug_heartbeat); any cadence well under the server's 2 h lost-heartbeat limit works.

Debug commands (spec panda-server.md A.7: any command with a space) are tail, ls, ps, du only, run without a
shell in the job's work dir; their output goes in the next update.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import threading
import time
from typing import Callable, Dict

from ..threads import GuardedThread

log = logging.getLogger(__name__)

DEBUG_VERBS = ("tail", "ls", "ps", "du")
MAX_DEBUG_OUTPUT = 2048


def _stays_inside(workdir: str, name: str) -> bool:
    """Whether `name` resolves inside the work dir (the payload may have made it a symlink to anywhere)."""
    root = os.path.realpath(workdir)
    return os.path.commonpath([root, os.path.realpath(os.path.join(root, name))]) == root


def run_debug_command(command: str, workdir: str) -> str:
    """Run an allowed debug command (no shell; paths must stay inside the work dir); its output, truncated."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return f"debug command not parsed: {exc}"
    if not argv or argv[0] not in DEBUG_VERBS:
        return f"debug command {argv[:1]} not allowed (allowed: {', '.join(DEBUG_VERBS)})"
    for arg in argv[1:]:
        if arg.startswith("/") or ".." in arg.split("/") or any(ch in arg for ch in ";|&$`<>\n"):
            return f"debug command argument {arg!r} not allowed"
        if workdir and not arg.startswith("-") and not _stays_inside(workdir, arg):
            return f"debug command argument {arg!r} leads out of the work dir (symbolic link): not allowed"
    try:
        done = subprocess.run(argv, cwd=workdir or None, capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"debug command failed: {exc}"
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    return output[-MAX_DEBUG_OUTPUT:]


class Heartbeat(GuardedThread):
    """The schedule: `watch` a job id, `beat_soon` to send at once, `unwatch` after its final update.

    A failure while sending for one job goes to `failed(jobid, exc)` (the reporter kills that job with 1319); a
    failure of the thread itself aborts the pilot (GuardedThread).
    """

    def __init__(self, ctx, send: Callable[[str], object], interval: Callable[[str], float],
                 failed: Callable[[str, Exception], object]):
        super().__init__("heartbeat", ctx.request_abort)
        self.ctx = ctx
        self._send = send
        self.interval = interval
        self._failed = failed
        self._cond = threading.Condition()
        self._due: Dict[str, float] = {}  # jobid -> monotonic time of the next heartbeat
        self._stopped = False

    def watch(self, jobid: str) -> None:
        with self._cond:
            self._due[jobid] = time.monotonic() + self.interval(jobid)
            self._cond.notify()

    def beat_soon(self, jobid: str) -> None:
        """Send for `jobid` now, from this thread: the caller must not wait for the server."""
        with self._cond:
            self._due[jobid] = time.monotonic()
            self._cond.notify()

    def unwatch(self, jobid: str) -> None:
        with self._cond:
            self._due.pop(jobid, None)
            self._cond.notify()

    def watched(self, jobid: str) -> bool:
        with self._cond:
            return jobid in self._due

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def work(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    due = [jobid for jobid, when in self._due.items() if when <= now]
                    if due:
                        break
                    timeout = min(self._due.values()) - now if self._due else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                for jobid in due:
                    self._due[jobid] = time.monotonic() + self.interval(jobid)
            for jobid in due:
                try:
                    self.beat(jobid)
                except Exception as exc:
                    log.error("job %s: heartbeat failed", jobid, exc_info=True)
                    self.unwatch(jobid)
                    self._failed(jobid, exc)

    def beat(self, jobid: str) -> None:
        self._send(jobid)
        with self._cond:  # debug mode may have changed the interval
            if jobid in self._due:
                self._due[jobid] = min(self._due[jobid], time.monotonic() + self.interval(jobid))

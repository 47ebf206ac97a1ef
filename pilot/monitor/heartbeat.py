"""Heartbeat scheduling, and the server's debug commands.

One thread for all jobs of the pilot: it sleeps until the next heartbeat is due (or a job is added or removed)
and calls `send(jobid)` for each job that is due; what is sent, and what the server answers, is the reporter's
business (pilot/reporter.py). Default interval 1800 s ([Pilot] heartbeat), 60 s in debug mode ([Pilot]
debug_heartbeat); any cadence well under the server's 2 h lost-heartbeat limit works.

Between heartbeats, every [Pilot] command_check s (0: never), the same thread calls `check(jobid)`: the reporter
asks the channel for the job's pending commands without sending an update (Channel.commands: PanDA's
job/get_status, one primary-key read), so a server kill reaches the payload within command_check instead of
within a heartbeat period.

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
from typing import Callable, Dict, Optional

from .. import ownprocs
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
        with ownprocs.helper(argv, cwd=workdir or None, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL) as proc:
            stdout, stderr = proc.communicate(timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"debug command failed: {exc}"
    output = (stdout + stderr).decode("utf-8", "replace")
    return output[-MAX_DEBUG_OUTPUT:]


class Heartbeat(GuardedThread):
    """The schedule: `watch` a job id, `beat_soon` to send at once, `unwatch` after its final update.

    A failure while sending (or checking) for one job goes to `failed(jobid, exc)` (the reporter kills that job
    with 1319); a failure of the thread itself aborts the pilot (GuardedThread).
    """

    def __init__(self, ctx, send: Callable[[str], object], interval: Callable[[str], float],
                 failed: Callable[[str, Exception], object], check: Optional[Callable[[str], object]] = None):
        super().__init__("heartbeat", ctx.request_abort)
        self.ctx = ctx
        self._send = send
        self.interval = interval
        self._failed = failed
        self._check = check
        self._cond = threading.Condition()
        self._due: Dict[str, float] = {}  # jobid -> monotonic time of the next heartbeat
        self._check_due: Dict[str, float] = {}  # jobid -> monotonic time of the next command check
        self._stopped = False

    def _check_period(self) -> float:
        return float(self.ctx.config.pilot.command_check) if self._check is not None else 0.0

    def watch(self, jobid: str) -> None:
        check = self._check_period()
        with self._cond:
            self._due[jobid] = time.monotonic() + self.interval(jobid)
            if check > 0:
                self._check_due[jobid] = time.monotonic() + check
            self._cond.notify()

    def beat_soon(self, jobid: str) -> None:
        """Send for `jobid` now, from this thread: the caller must not wait for the server."""
        with self._cond:
            self._due[jobid] = time.monotonic()
            self._cond.notify()

    def unwatch(self, jobid: str) -> None:
        with self._cond:
            self._due.pop(jobid, None)
            self._check_due.pop(jobid, None)
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
                    checks = [jobid for jobid, when in self._check_due.items() if when <= now and jobid not in due]
                    if due or checks:
                        break
                    times = list(self._due.values()) + list(self._check_due.values())
                    self._cond.wait(min(times) - now if times else None)
                if self._stopped:
                    return
                check = self._check_period()
                for jobid in due + checks:  # a heartbeat brings the commands too: it restarts the check period
                    if jobid in due:
                        self._due[jobid] = time.monotonic() + self.interval(jobid)
                    if check > 0:
                        self._check_due[jobid] = time.monotonic() + check
            for jobid, action, what in [(j, self.beat, "heartbeat") for j in due] + \
                    [(j, self._check, "command check") for j in checks]:
                try:
                    action(jobid)
                except Exception as exc:
                    log.error("job %s: %s failed", jobid, what, exc_info=True)
                    self.unwatch(jobid)
                    self._failed(jobid, exc)

    def beat(self, jobid: str) -> None:
        self._send(jobid)
        with self._cond:  # debug mode may have changed the interval
            if jobid in self._due:
                self._due[jobid] = min(self._due[jobid], time.monotonic() + self.interval(jobid))

"""Job heartbeats and the server's commands.

One thread for all jobs of the pilot: it sleeps until the next heartbeat is due (or a job is added or removed),
sends a `running` update for each job that is due, and applies what the server answers. Default interval 1800 s
([Pilot] heartbeat), 60 s in debug mode ([Pilot] debug_heartbeat); any cadence well under the server's 2 h
lost-heartbeat limit works.

Between heartbeats, every [Pilot] command_check s (0: never), the same thread asks the channel for the job's
pending commands without sending an update (Channel.commands: PanDA's job/get_status, one primary-key read), so
a server kill reaches the payload within command_check instead of within a heartbeat period.

Commands (spec panda-server.md A.7): tobekilled -> kill the payload, job fails with 1144; alreadydone on a
running job -> the server has finished it: stop it (1236); softkill -> finish the current jobs, take no new ones;
debug / debugoff -> heartbeat every debug_heartbeat s; any other command with a space is a debug command
(tail, ls, ps, du only; run without a shell, in the job's work dir) whose output goes in the next update.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import threading
import time
from typing import Dict, List

from .. import ownprocs
from ..job import Job
from ..threads import INTERNAL_ERROR, GuardedThread, internal_diag

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


def apply_commands(ctx, job: Job, commands: List[str]) -> None:
    """Act on the commands of one update reply for `job`."""
    for command in commands:
        if command == "tobekilled":
            job.kill.fire(1144, "job killed by the PanDA server (tobekilled)")
        elif command == "alreadydone":
            if not job.kill.is_set():
                job.kill.fire(1236, "server reports the job as already done (alreadydone)")
        elif command == "softkill":
            ctx.drain.fire(0, f"server sent softkill for job {job.jobid}")
        elif command == "debug":
            job.debug = True
        elif command == "debugoff":
            job.debug = False
        elif " " in command or command in DEBUG_VERBS:
            job.debug_stdout = run_debug_command(command, job.workdir)
        elif command == "nocleanup":
            job.keep_workdir = True
        else:
            log.warning("job %s: unknown server command %r ignored", job.jobid, command)


class Heartbeat(GuardedThread):
    """A failure while beating one job kills that job (1319); a failure of the thread itself aborts the pilot."""

    def __init__(self, ctx, pipeline):
        super().__init__("heartbeat", ctx.request_abort)
        self.ctx = ctx
        self.pipeline = pipeline
        self._cond = threading.Condition()
        self._due: Dict[str, float] = {}  # jobid -> monotonic time of the next heartbeat
        self._check_due: Dict[str, float] = {}  # jobid -> monotonic time of the next command check
        self._jobs: Dict[str, Job] = {}
        self._stopped = False

    def interval(self, job: Job) -> float:
        cfg = self.ctx.config.pilot
        return cfg.debug_heartbeat if job.debug else cfg.heartbeat

    def watch(self, job: Job) -> None:
        job.last_heartbeat = job.last_heartbeat or time.monotonic()
        check = self.ctx.config.pilot.command_check
        with self._cond:
            self._jobs[job.jobid] = job
            self._due[job.jobid] = time.monotonic() + self.interval(job)
            if check > 0:
                self._check_due[job.jobid] = time.monotonic() + check
            self._cond.notify()

    def beat_soon(self, job: Job) -> None:
        """Send a heartbeat for `job` now, from this thread: the caller must not wait for the server."""
        job.last_heartbeat = job.last_heartbeat or time.monotonic()
        with self._cond:
            self._jobs[job.jobid] = job
            self._due[job.jobid] = time.monotonic()
            self._cond.notify()

    def unwatch(self, job: Job) -> None:
        with self._cond:
            self._jobs.pop(job.jobid, None)
            self._due.pop(job.jobid, None)
            self._check_due.pop(job.jobid, None)
            self._cond.notify()

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
                jobs = [self._jobs[jobid] for jobid in due]
                checked = [self._jobs[jobid] for jobid in checks]
                check = self.ctx.config.pilot.command_check
                for job in jobs + checked:  # a heartbeat brings the commands too: it restarts the check period
                    if job.jobid in due:
                        self._due[job.jobid] = time.monotonic() + self.interval(job)
                    if check > 0:
                        self._check_due[job.jobid] = time.monotonic() + check
            for job in jobs:
                try:
                    self.beat(job)
                except Exception as exc:
                    log.error("job %s: heartbeat failed", job.jobid, exc_info=True)
                    self.unwatch(job)
                    job.kill.fire(INTERNAL_ERROR, internal_diag("heartbeat", exc))
            for job in checked:
                try:
                    self.pipeline.check_commands(job)
                except Exception as exc:
                    log.error("job %s: command check failed", job.jobid, exc_info=True)
                    self.unwatch(job)
                    job.kill.fire(INTERNAL_ERROR, internal_diag("command check", exc))

    def beat(self, job: Job) -> None:
        self.pipeline.report(job)
        silent = time.monotonic() - job.last_heartbeat
        if silent > self.ctx.config.pilot.lost_heartbeat and not job.kill.is_set():
            # the server has declared this job lost long ago: stop wasting the slot on it
            job.kill.fire(1317, f"no update of job {job.jobid} acknowledged for {silent:.0f} s (lost heartbeat)")
        with self._cond:  # debug mode may have changed the interval
            if job.jobid in self._due:
                self._due[job.jobid] = min(self._due[job.jobid], time.monotonic() + self.interval(job))

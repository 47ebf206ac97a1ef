"""Run the payload in its own session and kill exactly what it started: never more.

The payload's processes are recognised by two marks that need no cgroups: the session id of the payload's
leader, and an environment variable with a random token that every descendant inherits (a daemon that calls
setsid keeps it). Only processes below the pilot itself are ever considered; with the pilot made a child
subreaper (`become_subreaper`), double-forked daemons of the payload re-parent to the pilot and stay below it.
Pilot 3's "kill every same-user process with PPID 1" is exactly what this replaces.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import subprocess
import threading
import time
import uuid
from typing import Dict, List, Optional

from ..threads import guarded

log = logging.getLogger(__name__)

TOKEN_VAR = "PILOT_PAYLOAD_TOKEN"
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux prctl); False where unsupported."""
    try:
        import ctypes  # lazily: a few ms, only needed once

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class PayloadProcess:
    """One payload: started with `start`, awaited with `wait`, stopped with `terminate` from any thread."""

    def __init__(self, argv: List[str], cwd: str, env: Dict[str, str], stdout_path: str, stderr_path: str):
        self.argv = argv
        self.cwd = cwd
        self.token = uuid.uuid4().hex
        self.env = dict(env, **{TOKEN_VAR: self.token})
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self.proc: Optional[subprocess.Popen] = None
        self.killed_by_pilot = False
        self.cpu_seconds = 0.0
        self._kill_lock = threading.Lock()
        self._killer: Optional[threading.Thread] = None
        self._rusage_before = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def start(self) -> int:
        self._rusage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, start_new_session=True, close_fds=True)
        log.info("payload started: pid %d in %s", self.proc.pid, self.cwd)
        return self.proc.pid

    def wait(self) -> int:
        """Block until the payload leader exits; return its exit status in shell terms (128+N if killed)."""
        assert self.proc is not None
        code = self.proc.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if self._rusage_before is not None:
            self.cpu_seconds = (after.ru_utime + after.ru_stime
                                - self._rusage_before.ru_utime - self._rusage_before.ru_stime)
        return 128 - code if code < 0 else code

    # --- finding our processes --------------------------------------------------------------------------------
    def descendants(self) -> list:
        """psutil.Process objects below the pilot that belong to this payload (leader included if alive).

        A process is the payload's if it is in the leader's session, carries the payload's token, or descends
        from one that does (container runtimes such as podman's conmon start their children in new sessions
        with a clean environment).
        """
        psutil = _psutil()
        if psutil is None:
            return []
        try:
            below = psutil.Process(os.getpid()).children(recursive=True)
        except psutil.Error:
            return []
        parent: Dict[int, int] = {}
        for proc in below:
            try:
                parent[proc.pid] = proc.ppid()
            except psutil.Error:
                continue
        marked = set()
        for proc in below:
            try:
                if proc.pid == self.pid or os.getsid(proc.pid) == self.pid or \
                        proc.environ().get(TOKEN_VAR) == self.token:
                    marked.add(proc.pid)
            except (psutil.Error, OSError):
                continue
        ours = []
        for proc in below:
            pid, seen = proc.pid, 0
            while pid in parent and pid not in marked and seen < 10000:
                pid, seen = parent[pid], seen + 1
            if pid in marked:
                ours.append(proc)
        return ours

    # --- killing ---------------------------------------------------------------------------------------------
    def terminate(self, grace: float) -> None:
        """SIGTERM the payload tree, SIGKILL what is left after `grace` s; returns at once (runs in a thread)."""
        with self._kill_lock:
            if self._killer is not None or self.proc is None:
                return
            self.killed_by_pilot = True
            killer = guarded("payload-killer", lambda: self.kill_tree(grace), self._last_resort)
            killer.start()
            self._killer = killer  # only a started thread is ever visible to cleanup()

    def _last_resort(self, _code: int, _diag: str) -> None:
        """The killer failed (a bug, psutil unusable): SIGKILL the payload's process group, all it can still reach."""
        self._signal([], signal.SIGKILL)

    def kill_tree(self, grace: float) -> int:
        """Synchronously kill every process of this payload; returns how many had to be signalled."""
        targets = self.descendants()
        if not targets:
            if self.proc is not None and self.proc.returncode is None:
                self._signal([], signal.SIGTERM)  # no psutil: the process group is all we can reach
            return 0
        psutil = _psutil()
        log.info("killing payload tree of %d: %s", self.pid, sorted(p.pid for p in targets))
        self._signal(targets, signal.SIGTERM)
        deadline = time.monotonic() + grace
        alive = targets
        while alive and time.monotonic() < deadline:
            time.sleep(0.02)  # bounded: only while a kill is in progress
            alive = [p for p in alive if _running(p, psutil)]
        if alive:
            log.warning("SIGKILL to %s after %.0f s grace", sorted(p.pid for p in alive), grace)
            self._signal(alive + self.descendants(), signal.SIGKILL)
            deadline = time.monotonic() + 2.0  # SIGKILL is not ignorable; give the kernel a moment
            while alive and time.monotonic() < deadline:
                time.sleep(0.01)
                alive = [p for p in alive if _running(p, psutil)]
        self._reap(targets)
        return len(targets)

    def _signal(self, targets: list, signum: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass  # the group is gone already; the per-process signals below still apply
        for proc in targets:
            try:
                proc.send_signal(signum)
            except _psutil().Error as exc:  # gone already, or not ours to signal
                log.debug("signal %d to %d: %s", signum, proc.pid, exc)

    def _reap(self, targets: list) -> None:
        """Collect exit statuses of re-parented descendants (never the leader: its Popen does that)."""
        for proc in targets:
            if proc.pid == self.pid:
                continue
            try:
                os.waitpid(proc.pid, os.WNOHANG)
            except ChildProcessError:
                continue

    def cleanup(self, grace: float) -> int:
        """After the leader exited: kill whatever it left behind; wait for a running kill to finish."""
        with self._kill_lock:
            killer = self._killer
        if killer is not None:
            killer.join()
        return self.kill_tree(grace)


def _psutil():
    """psutil, imported on first use (it is only needed when something has to be killed)."""
    try:
        import psutil
    except ImportError:
        log.warning("psutil is not installed: only the payload's process group can be killed")
        return None
    return psutil


def _running(proc, psutil) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False

"""Run the payload in its own session and kill exactly what it started: never more, and nothing less.

Membership cannot depend on anything the payload can change (session, process group, environment): the pilot
is a child subreaper (`become_subreaper`), so every process the payload starts stays below the pilot whatever
it does, and the payload's processes are those below the pilot that are not in the subtree of one of the
pilot's own helpers (`pilot.ownprocs`). Where the node allows it, the payload also runs in a cgroup v2 of its
own (`cgroup.JobCgroup`), which `cgroup.kill` empties at once. A kill repeats until a scan finds nothing, so a
tree that keeps forking children that ignore SIGTERM is still emptied. The per-job token in the environment
is kept for a later pilot that has to sweep what a SIGKILLed one left (`pilot.recovery`).
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
from typing import Dict, List, Optional, Set

from .. import ownprocs
from ..ids import new_hex_uuid
from .cgroup import JobCgroup

from ..threads import guarded

log = logging.getLogger(__name__)

TOKEN_VAR = "PILOT_PAYLOAD_TOKEN"
_PR_SET_CHILD_SUBREAPER = 36
SWEEP_LIMIT = 10.0  # seconds of SIGKILL rounds at most (a scan finds nothing after one round unless it forks)


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

    def __init__(self, argv: List[str], cwd: str, env: Dict[str, str], stdout_path: str, stderr_path: str,
                 cgroup: Optional[JobCgroup] = None):
        self.cgroup = cgroup
        self.argv = cgroup.shim(argv) if cgroup else argv
        self.cwd = cwd
        self.token = new_hex_uuid()
        self.env = dict(env, **{TOKEN_VAR: self.token})
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self.proc: Optional[subprocess.Popen] = None
        self.killed_by_pilot = False
        self.cpu_seconds = 0.0
        self._kill_lock = threading.Lock()
        self._killer: Optional[threading.Thread] = None
        self._rusage_before = None
        self.started_at = 0.0  # the leader's create time (psutil), for a later sweep to recognise it

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def start(self) -> int:
        self._rusage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, start_new_session=True, close_fds=True)
        psutil = _psutil()
        try:
            self.started_at = psutil.Process(self.proc.pid).create_time() if psutil else 0.0
        except psutil.Error:
            self.started_at = 0.0
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
        """psutil.Process objects of this payload that are alive (leader included), zombies left out."""
        return self._scan()[0]

    def _scan(self):
        """(alive members, zombie members): below the pilot outside its helpers' subtrees, plus the cgroup."""
        psutil = _psutil()
        if psutil is None:
            return [], []
        me = os.getpid()
        with ownprocs.scanning() as helpers:
            try:
                below = psutil.Process(me).children(recursive=True)
            except psutil.Error:
                below = []
        parent: Dict[int, int] = {}
        for proc in below:
            try:
                parent[proc.pid] = proc.ppid()
            except psutil.Error:
                continue
        members = []
        for proc in below:
            top, hops = proc.pid, 0
            while parent.get(top, me) != me and hops < 100000:
                top, hops = parent[top], hops + 1
            if top not in helpers:
                members.append(proc)
        if self.cgroup is not None:  # where the pilot could not become a subreaper, the cgroup still holds them
            known = {proc.pid for proc in members}
            for pid in self.cgroup.pids():
                if pid not in known and pid != me:
                    try:
                        members.append(psutil.Process(pid))
                    except psutil.Error:
                        continue
        alive, zombies = [], []
        for proc in members:
            try:
                (zombies if proc.status() == psutil.STATUS_ZOMBIE else alive).append(proc)
            except psutil.Error:
                continue
        return alive, zombies

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
        """Synchronously kill every process of this payload until a scan finds none; how many were signalled."""
        signalled: Set[int] = set()
        alive, zombies = self._scan()
        self._reap(zombies)
        if not alive:
            if self.proc is not None and self.proc.returncode is None:
                self._signal([], signal.SIGTERM)  # no psutil: the process group is all we can reach
            return 0
        log.info("killing payload tree of %d: %s", self.pid, sorted(p.pid for p in alive))
        self._signal(alive, signal.SIGTERM)
        signalled.update(p.pid for p in alive)
        deadline = time.monotonic() + grace
        while alive and time.monotonic() < deadline:
            time.sleep(0.02)  # bounded: only while a kill is in progress
            alive, zombies = self._scan()
            self._reap(zombies)
            fresh = [p for p in alive if p.pid not in signalled]
            if fresh:  # born during the grace: they get their SIGTERM too
                self._signal(fresh, signal.SIGTERM)
                signalled.update(p.pid for p in fresh)
        rounds = 0
        stop_by = time.monotonic() + SWEEP_LIMIT
        while alive:
            if rounds == 0:
                log.warning("SIGKILL to %s after %.0f s grace", sorted(p.pid for p in alive), grace)
            if self.cgroup is not None:
                self.cgroup.kill()
            self._signal(alive, signal.SIGKILL)
            signalled.update(p.pid for p in alive)
            rounds += 1
            time.sleep(0.005)  # SIGKILL is not ignorable; give the kernel a moment before the next scan
            alive, zombies = self._scan()
            self._reap(zombies)
            if alive and time.monotonic() > stop_by:
                log.error("payload of %d: %d process(es) still alive after %d SIGKILL rounds: %s", self.pid,
                          len(alive), rounds, sorted(p.pid for p in alive)[:20])
                break
        if rounds > 1:
            log.info("payload of %d: its tree was empty after %d SIGKILL rounds", self.pid, rounds)
        return len(signalled)

    def _signal(self, targets: list, signum: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass  # the group is gone already; the per-process signals below still apply
        for proc in targets:
            try:
                proc.send_signal(signum)  # psutil checks the pid still names the process that was scanned
            except _psutil().Error as exc:  # gone already, or not ours to signal
                log.debug("signal %d to %d: %s", signum, proc.pid, exc)

    def _reap(self, zombies: list) -> None:
        """Collect exit statuses of re-parented members (never the leader: its Popen does that)."""
        for proc in zombies:
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
        count = self.kill_tree(grace)
        if self.cgroup is not None:
            self.cgroup.remove()
        return count


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

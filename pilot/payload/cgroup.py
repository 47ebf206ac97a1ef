"""A cgroup v2 per job, where the node lets the pilot make one: the containment of record, as Slurm and HTCondor.

A process cannot leave its cgroup by changing its session, process group or environment, and `cgroup.kill`
kills every member at once, also one forking as fast as it can. The pilot makes `pilot.<pid>.job.<PandaID>`
below its own cgroup when that directory is writable (a delegated subtree, or root), puts the payload in it
from a one-line shim before the payload's command runs, sets `memory.max` when the memory controller is
delegated, and removes the group once it is empty. Where none of this is possible (cgroup v1 only, no write
access, no `cgroup.kill` before Linux 5.14) the pilot says so once and relies on its subreaper ancestry.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import List, Optional

log = logging.getLogger(__name__)

PROC_CGROUP = "/proc/self/cgroup"
MOUNTINFO = "/proc/self/mountinfo"
# the shim: move itself ("0" = the writer) into the job's cgroup, then become the payload; a failed move is
# silent (the payload is still found through the pilot's ancestry)
SHIM = '{ echo 0 > "$0"; } 2>/dev/null; exec "$@"'


def cgroup2_mount(mountinfo: str = MOUNTINFO) -> Optional[str]:
    """Mount point of the cgroup v2 hierarchy (the unified one on a hybrid node), or None."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if " - " not in line or len(fields) < 5:
                    continue
                if line.split(" - ", 1)[1].split()[0] == "cgroup2":
                    return fields[4].replace("\\040", " ")
    except OSError:
        return None
    return None


def own_cgroup_dir(proc_cgroup: str = PROC_CGROUP, mountinfo: str = MOUNTINFO) -> Optional[str]:
    """The directory of this process's cgroup v2, or None when there is no v2 hierarchy."""
    mount = cgroup2_mount(mountinfo)
    if mount is None:
        return None
    try:
        with open(proc_cgroup, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("0::"):
                    path = os.path.join(mount, line[3:].strip().lstrip("/"))
                    return path if os.path.isdir(path) else None
    except OSError:
        return None
    return None


def remove_stale(parent: Optional[str], including_own: bool = False) -> int:
    """rmdir the empty job cgroups of pilots that are gone (SIGKILLed, or ended at the abort grace with a job
    still running); a group with members is left alone (rmdir refuses it), so this never touches a process."""
    if not parent:
        return 0
    try:
        names = os.listdir(parent)
    except OSError:
        return 0
    removed = 0
    for name in names:
        parts = name.split(".")
        if len(parts) < 4 or parts[0] != "pilot" or parts[2] != "job" or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid() and not including_own:
            continue
        if pid != os.getpid() and _pid_alive(pid):
            continue
        try:
            os.rmdir(os.path.join(parent, name))
            removed += 1
        except OSError:
            continue
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobCgroup:
    """One job's cgroup directory."""

    def __init__(self, path: str):
        self.path = path

    @classmethod
    def create(cls, parent: Optional[str], name: str, memory_max_bytes: int = 0) -> Optional["JobCgroup"]:
        """Make the job's cgroup below `parent`; None (logged) when the node does not allow it."""
        if not parent:
            return None
        path = os.path.join(parent, name)
        try:
            os.mkdir(path)
        except FileExistsError:
            pass
        except OSError as exc:
            log.info("cannot make a cgroup per job in %s (%s): the pilot's process ancestry is used", parent,
                     exc.strerror)
            return None
        group = cls(path)
        if not os.path.exists(os.path.join(path, "cgroup.kill")):  # the root group never has one
            log.info("no cgroup.kill in %s (Linux < 5.14?): no cgroup per job", path)
            group.remove(0.0)
            return None
        if memory_max_bytes > 0:
            group.set_memory_max(memory_max_bytes)
        log.info("payload cgroup %s", path)
        return group

    @property
    def procs_file(self) -> str:
        return os.path.join(self.path, "cgroup.procs")

    def shim(self, argv: List[str]) -> List[str]:
        """`argv` started inside this cgroup."""
        return ["/bin/sh", "-c", SHIM, self.procs_file] + list(argv)

    def set_memory_max(self, limit: int) -> bool:
        if "memory" not in self._read("cgroup.controllers").split():
            log.info("memory controller not delegated to %s: no memory.max", self.path)
            return False
        try:
            with open(os.path.join(self.path, "memory.max"), "w", encoding="ascii") as handle:
                handle.write(str(int(limit)))
        except OSError as exc:
            log.warning("cannot set memory.max of %s: %s", self.path, exc)
            return False
        log.info("memory.max of %s: %d MB", self.path, limit >> 20)
        return True

    def pids(self) -> List[int]:
        return [int(word) for word in self._read("cgroup.procs").split() if word.isdigit()]

    def kill(self) -> bool:
        """SIGKILL every member at once (cgroup.kill); per pid if that fails. True if there was anyone."""
        members = self.pids()
        if not members:
            return False
        try:
            with open(os.path.join(self.path, "cgroup.kill"), "w", encoding="ascii") as handle:
                handle.write("1")
        except OSError as exc:
            log.warning("cgroup.kill of %s failed (%s): killing its %d member(s) one by one", self.path, exc,
                        len(members))
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    continue
        return True

    def remove(self, wait: float = 2.0) -> bool:
        """Remove the (emptied) directory; a group with members left is kept and logged."""
        deadline = time.monotonic() + wait
        while True:
            try:
                os.rmdir(self.path)
                return True
            except FileNotFoundError:
                return True
            except OSError as exc:
                if time.monotonic() >= deadline:
                    log.warning("cgroup %s not removed: %s", self.path, exc.strerror)
                    return False
            time.sleep(0.02)  # bounded: the kernel releases a killed group's members within milliseconds

    def _read(self, name: str) -> str:
        try:
            with open(os.path.join(self.path, name), encoding="ascii", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

"""What a SIGKILLed pilot leaves behind, found and finished by the next pilot on the node, or by the wrapper.

Nothing in a pilot can act on its own SIGKILL, so it leaves records that outlive it:
- `<main dir>/payloads/<PandaID>.json` while a payload runs: the owner pilot (pid + start time), the payload
  leader (pid + start time), the payload's random token (in its environment) and its cgroup, if any;
- for a job claimed from `local:DIR`, `DIR/.claimed/<claimed file>.owner`: the owner pilot, its host and main
  dir, removed when the job's final report is written.

`sweep(main)` kills, for every payload record whose owner is gone, the processes that are certainly that
payload's and nothing else: the members of its recorded cgroup, those whose environment carries its token, the
leader while its pid and start time still match, and everything below those. A process the payload moved out
of all three (a new session with a clean environment, on a node without a cgroup per job) is beyond reach: the
batch system reaps it at the end of the batch job. `recover_claims(DIR)` reports each claimed job whose owner
is gone and that has no final report as failed with 1317 (lost heartbeat), in the owner's reports dir, after
sweeping the owner's payloads. Records of a live owner are never touched.

`python -m pilot.recovery MAIN_DIR...` (the wrapper, after its pilot died of a signal) sweeps those dirs.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from typing import Any, Dict, List, Optional

log = logging.getLogger(__name__)

PAYLOADS_DIR = "payloads"
OWNER_SUFFIX = ".owner"
LOST_HEARTBEAT = 1317
SWEEP_LIMIT = 10.0


# --- who is alive ---------------------------------------------------------------------------------------------
def process_started(pid: int, proc: str = "/proc") -> float:
    """Start time of `pid` in seconds since the epoch, 0.0 if there is no such process.

    The figure psutil's create_time() gives (boot time + start ticks / clock ticks, from /proc), read here
    without psutil: a pilot claiming its first job writes its own start time, and importing psutil for that
    cost ~15 ms before the payload started. Records written by either agree to well within `same_process`'s
    tolerance.
    """
    try:
        with open(f"{proc}/{int(pid)}/stat", "rb") as handle:
            stat = handle.read()
        ticks = int(stat[stat.rindex(b")") + 2:].split()[19])  # field 22, starttime; comm may hold spaces
        with open(f"{proc}/stat", "rb") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith(b"btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return 0.0
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def same_process(pid: int, started: float) -> bool:
    """Whether `pid` still names the process that started at `started` (pids are reused)."""
    return bool(pid) and bool(started) and abs(process_started(pid) - started) < 0.05


def me() -> Dict[str, Any]:
    return {"pid": os.getpid(), "started": process_started(os.getpid()), "host": os.uname().nodename}


# --- payload records ------------------------------------------------------------------------------------------
def _write(path: str, data: Dict[str, Any]) -> bool:
    temp = f"{path}.tmp{os.getpid()}"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(temp, path)
        return True
    except OSError as exc:
        log.warning("cannot write %s: %s (a later pilot could not sweep after this one)", path, exc)
        if os.path.lexists(temp):
            os.unlink(temp)
        return False


def _read(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read(65536).decode("utf-8"))
        return data if isinstance(data, dict) else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def record_payload(main: str, jobid: str, payload) -> Optional[str]:
    """Write the payload record of a started payload; its path (None if it could not be written)."""
    folder = os.path.join(main, PAYLOADS_DIR)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        log.warning("cannot make %s: %s", folder, exc)
        return None
    path = os.path.join(folder, f"{jobid}.json")
    record = {"owner": me(), "jobid": jobid, "pid": payload.pid, "started": payload.started_at,
              "token": payload.token, "cgroup": payload.cgroup.path if payload.cgroup else ""}
    return path if _write(path, record) else None


def forget(path: Optional[str]) -> None:
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove %s: %s", path, exc)


def _owner_gone(owner: Any) -> bool:
    if not isinstance(owner, dict) or owner.get("host") != os.uname().nodename:
        return False  # not this node's: nothing here can tell
    try:
        pid, started = int(owner.get("pid", 0)), float(owner.get("started", 0.0))
    except (TypeError, ValueError):
        return False
    return pid != os.getpid() and not same_process(pid, started)


def _members(record: Dict[str, Any]) -> list:
    """The live processes certainly of this payload (see the module docstring); never this one or its parents."""
    import psutil

    token = str(record.get("token") or "")
    roots = set()
    group = str(record.get("cgroup") or "")
    if group and os.path.basename(group).startswith("pilot.") and os.path.isdir(group):
        from .payload.cgroup import JobCgroup

        roots.update(JobCgroup(group).pids())
    try:
        leader, started = int(record.get("pid", 0)), float(record.get("started", 0.0))
    except (TypeError, ValueError):
        leader, started = 0, 0.0
    if same_process(leader, started):
        roots.add(leader)
    if len(token) >= 32:
        from .payload.process import TOKEN_VAR

        for proc in psutil.process_iter():
            try:
                if proc.environ().get(TOKEN_VAR) == token:
                    roots.add(proc.pid)
            except (psutil.Error, OSError):
                continue
    protected = {os.getpid()}
    try:
        protected.update(parent.pid for parent in psutil.Process().parents())
    except psutil.Error:
        pass
    found: Dict[int, Any] = {}
    for pid in roots:
        try:
            top = psutil.Process(pid)
            for proc in [top] + top.children(recursive=True):
                if proc.pid not in protected and proc.status() != psutil.STATUS_ZOMBIE:
                    found[proc.pid] = proc
        except psutil.Error:
            continue
    return list(found.values())


def sweep(main: str) -> int:
    """Kill what the payloads of dead owners left in `main`'s records; how many processes were killed."""
    folder = os.path.join(main, PAYLOADS_DIR)
    try:
        names = sorted(name for name in os.listdir(folder) if name.endswith(".json"))
    except OSError:
        return 0
    import psutil

    killed = 0
    for name in names:
        path = os.path.join(folder, name)
        record = _read(path)
        if record is None or not _owner_gone(record.get("owner")):
            continue
        deadline = time.monotonic() + SWEEP_LIMIT
        seen = set()
        while time.monotonic() < deadline:
            alive = _members(record)
            if not alive:
                break
            group = str(record.get("cgroup") or "")
            if group and os.path.isdir(group):
                from .payload.cgroup import JobCgroup

                JobCgroup(group).kill()
            for proc in alive:
                try:
                    proc.send_signal(signal.SIGKILL)
                    seen.add(proc.pid)
                except psutil.Error:
                    continue
            time.sleep(0.01)  # bounded by SWEEP_LIMIT: SIGKILL takes effect within milliseconds
        killed += len(seen)
        log.warning("job %s: swept %d process(es) left by dead pilot %s", record.get("jobid"), len(seen),
                    (record.get("owner") or {}).get("pid"))
        group = str(record.get("cgroup") or "")
        if group and os.path.isdir(group):
            from .payload.cgroup import JobCgroup

            JobCgroup(group).remove()
        forget(path)
    return killed


# --- claimed local:DIR jobs -----------------------------------------------------------------------------------
def record_claim(claimed_dir: str, claimed_name: str, main: str) -> Optional[str]:
    path = os.path.join(claimed_dir, claimed_name + OWNER_SUFFIX)
    try:
        os.makedirs(claimed_dir, exist_ok=True)
    except OSError as exc:
        log.warning("cannot make %s: %s", claimed_dir, exc)
        return None
    return path if _write(path, dict(me(), main=main)) else None


def orphaned_claims(claimed_dir: str) -> List[Dict[str, Any]]:
    """Owner records in DIR/.claimed whose owner is gone: [{record..., "record_path", "claimed_name"}]."""
    try:
        names = sorted(name for name in os.listdir(claimed_dir) if name.endswith(OWNER_SUFFIX))
    except OSError:
        return []
    found = []
    for name in names:
        path = os.path.join(claimed_dir, name)
        record = _read(path)
        if record is not None and _owner_gone(record):
            found.append(dict(record, record_path=path, claimed_name=name[: -len(OWNER_SUFFIX)]))
    return found


def has_final_report(main: str, jobid: str) -> bool:
    try:
        return any(name.endswith(".final.json") for name in os.listdir(os.path.join(main, "reports", jobid)))
    except OSError:
        return False


def main(argv: Optional[List[str]] = None) -> int:
    """Sweep the main dirs given; exit 0 (also when there was nothing to do)."""
    logging.basicConfig(level=logging.INFO, format="pilot.recovery: %(message)s", stream=sys.stderr)
    total = sum(sweep(folder) for folder in (sys.argv[1:] if argv is None else argv) if os.path.isdir(folder))
    if total:
        log.info("%d process(es) of a killed pilot swept", total)
    return 0


if __name__ == "__main__":
    sys.exit(main())

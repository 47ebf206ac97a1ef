"""Monitoring checks: small objects with an interval that return (code, diag) when the payload must die.

Defaults and codes follow Pilot 3 (spec pilot3-reference §7.1). The work dir is scanned once per tick, with
os.scandir, and the result shared by the work-dir-size, looping and output-size checks (Pilot 3 runs `du` and
`find` separately for each).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import field
from typing import Dict, List, Optional, Tuple

from ..records import Record, record

Result = Optional[Tuple[int, str]]

# never count as "the payload is still working" (monitor and pilot files, and what Pilot 3 ignores)
LOOPING_IGNORE = ("memory_monitor_output.txt", "memory_monitor_summary.json", "pilotlog.txt", "payload.stdout",
                  "payload.stderr")


@record
class WorkdirScan(Record):
    total_bytes: int = 0  # on disk (blocks)
    apparent_bytes: int = 0  # as the files say (a sparse file of holes counts in full: it would be tarred so)
    newest_mtime: float = 0.0  # of files not in the ignore list
    sizes: Dict[str, int] = field(default_factory=dict)  # top-level regular files

    @classmethod
    def of(cls, root: str) -> "WorkdirScan":
        scan = cls()
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                        continue
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                scan.total_bytes += info.st_blocks * 512 if info.st_blocks else info.st_size
                scan.apparent_bytes += info.st_size
                if folder == root:
                    scan.sizes[entry.name] = info.st_size
                if entry.name not in LOOPING_IGNORE and not entry.name.endswith(".py"):
                    scan.newest_mtime = max(scan.newest_mtime, info.st_mtime)
        return scan


@record
class MonitorState(Record):
    """What the checks may look at on one tick."""

    ctx: object
    job: object
    started: float  # time.time() when the payload started
    sample: Optional[dict] = None  # the latest sampler row (memory in kB)
    scan: Optional[WorkdirScan] = None
    suspended: float = 0.0  # seconds the node was detected suspended (subtracted from idle times)


class Check:
    name = "check"
    interval_key = "disk_space_verification_time"  # [Pilot] key holding the interval

    def interval(self, ctx) -> float:
        return getattr(ctx.config.pilot, self.interval_key)

    def run(self, state: MonitorState) -> Result:
        raise NotImplementedError


class MemoryCheck(Check):
    """PSS of the payload tree over the job's memory limit -> 1235 (checked on every sample)."""

    name = "memory"
    interval_key = "memory_usage_verification_time"

    @staticmethod
    def limit_kb(ctx, job) -> int:
        qd = ctx.queuedata
        grace = 1.0 + float(qd.params.get("pilot_rss_grace", 100) or 100) / 100.0
        rtype = (getattr(ctx, "resource_types", None) or {}).get(job.resource_type, {})
        if rtype.get("maxrampercore"):  # the server's memory per core for the job's resource type
            return int(float(rtype["maxrampercore"]) * max(1, job.corecount) * grace * 1024)
        if qd.maxrss:
            per_core = qd.maxrss / max(1, qd.corecount)
            return int(per_core * max(1, job.corecount) * grace * 1024)
        if job.minramcount:
            return int(max(1000, -(-job.minramcount // 1000) * 1000) * grace * 1024)
        return 0

    def run(self, state: MonitorState) -> Result:
        limit = self.limit_kb(state.ctx, state.job)
        if not limit or not state.sample:
            return None
        pss = state.sample["pss"]
        if pss > limit:
            return 1235, f"payload PSS {pss / 1024:.0f} MB exceeds the memory limit of {limit / 1024:.0f} MB"
        return None


DISK_FULL_BYTES = 16 << 20  # below this much free space a disk is full: reports and log files may not fit


def free_bytes(path: str) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def disk_full(path: str) -> bool:
    """Less than DISK_FULL_BYTES free for the pilot where `path` is (an unreadable disk is not called full)."""
    try:
        return free_bytes(path) < DISK_FULL_BYTES
    except OSError:
        return False


class DiskSpaceCheck(Check):
    name = "disk space"

    def run(self, state: MonitorState) -> Result:
        limit = state.ctx.config.pilot.free_space_limit_running_mb * 1024 * 1024
        free = shutil.disk_usage(state.job.workdir).free
        if free < limit:
            return 1098, f"only {free // (1 << 20)} MB free in the work dir (< {limit // (1 << 20)} MB)"
        return None


class WorkdirSizeCheck(Check):
    name = "work dir size"

    def run(self, state: MonitorState) -> Result:
        ctx, job = state.ctx, state.job
        qd = ctx.queuedata
        max_mb = qd.maxwdir or ctx.config.pilot.maximum_input_file_sizes_mb
        if job.corecount == 1 and qd.corecount > 1:
            max_mb = max_mb / qd.corecount
        grace = float(qd.params.get("pilot_maxwdir_grace", 1.2) or 1.2)
        limit = int(max_mb * 1024 * 1024 * grace)
        size = max(state.scan.total_bytes, state.scan.apparent_bytes) if state.scan else 0
        if size > limit:
            return 1104, f"work dir is {size // (1 << 20)} MB (limit {limit // (1 << 20)} MB; apparent size " \
                         f"{state.scan.apparent_bytes // (1 << 20)} MB, on disk {state.scan.total_bytes // (1 << 20)} MB)"
        return None


class StdoutSizeCheck(Check):
    name = "stdout size"

    def run(self, state: MonitorState) -> Result:
        limit = state.ctx.config.pilot.local_size_limit_stdout_kb * 1024
        for name in (state.ctx.config.payload.payloadstdout, state.ctx.config.payload.payloadstderr):
            size = (state.scan.sizes.get(name, 0) if state.scan else 0)
            if size > limit:
                return 1106, f"{name} is {size // 1024} kB (limit {limit // 1024} kB)"
        return None


class OutputSizeCheck(Check):
    name = "output size"
    interval_key = "output_verification_time"

    def run(self, state: MonitorState) -> Result:
        limit = state.ctx.config.pilot.maximum_output_file_size_mb * 1024 * 1024
        for spec in state.job.outputs:
            size = state.scan.sizes.get(spec.lfn, 0) if state.scan else 0
            if size > limit:
                return 1124, f"output {spec.lfn} is {size // (1 << 20)} MB (limit {limit // (1 << 20)} MB)"
        return None


class LoopingCheck(Check):
    """No file in the work dir modified for the looping limit -> 1150 (time while suspended does not count)."""

    name = "looping"
    interval_key = "looping_verification_time"

    def run(self, state: MonitorState) -> Result:
        cfg = state.ctx.config.pilot
        if not state.job.looping_check:
            return None
        limit = max(cfg.looping_limit_default, cfg.looping_limit_min_default)
        now = time.time()
        newest = max(state.scan.newest_mtime if state.scan else 0.0, state.started)
        idle = now - newest - state.suspended
        if idle > limit:
            return 1150, f"looping job: no file in the work dir changed for {idle:.0f} s (limit {limit} s)"
        return None


class KillFileCheck(Check):
    name = "kill instruction"
    interval_key = "kill_instruction_time"

    def run(self, state: MonitorState) -> Result:
        path = os.path.join(state.ctx.paths.main, state.ctx.config.pilot.kill_instruction_filename)
        if os.path.exists(path):
            return 1363, f"kill instruction file {path} found"
        return None


class WalltimeCheck(Check):
    """The job's maxWalltime (if the queue asks for it, params.job_maxwalltime) x walltime grace -> 1213."""

    name = "walltime"
    interval_key = "memory_usage_verification_time"

    def run(self, state: MonitorState) -> Result:
        qd, job = state.ctx.queuedata, state.job
        if not (qd.params.get("job_maxwalltime") and job.maxwalltime):
            return None
        grace = 1.0 + float(qd.params.get("pilot_walltime_grace", 0) or 0) / 100.0
        ran = time.time() - state.started
        if ran > job.maxwalltime * grace:
            return 1213, f"payload ran {ran:.0f} s, over the job's maxWalltime of {job.maxwalltime} s"
        return None


class ProxyCheck(Check):
    """The X509 proxy the job uses must outlive it: expired 1373, under the running minimum 1370."""

    name = "proxy"
    interval_key = "proxy_verification_time"

    def run(self, state: MonitorState) -> Result:
        from .proxy import check_proxy, proxy_path

        ctx = state.ctx
        if not ctx.settings.verify_proxy or not os.path.exists(proxy_path()):
            return None
        return check_proxy(proxy_path(), ctx.config.pilot.proxy_min_lifetime_running, 1370)


def default_checks() -> List[Check]:
    """The checks every payload gets, by name from pilot.registry.CHECKS."""
    from ..registry import CHECKS, DEFAULT_CHECKS

    return [CHECKS.create(name) for name in DEFAULT_CHECKS]

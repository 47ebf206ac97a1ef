"""One psutil pass over the payload's process tree per interval: memory, CPU, I/O, processes, threads.

Output is what PanDA tooling already reads from prmon (which is not installable here, spec real-backends §6):
`memory_monitor_output.txt` (tab-separated, first line names the columns) and `memory_monitor_summary.json`
(`{"Max": {...}, "Avg": {...}}` with prmon's keys; memory in kB, I/O in bytes, times in s). Processes that
exit between samples keep contributing their last CPU and I/O counters, so totals never go backwards.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Dict, List, Optional

from ..payload.untrusted import open_to_write

log = logging.getLogger(__name__)

COLUMNS = ("Time", "nprocs", "nthreads", "pss", "rss", "swap", "vmem", "rchar", "read_bytes", "wchar",
           "write_bytes", "rx_bytes", "rx_packets", "tx_bytes", "tx_packets", "stime", "utime", "wtime")
MEMORY = ("pss", "rss", "swap", "vmem")
COUNTERS = ("rchar", "read_bytes", "wchar", "write_bytes", "stime", "utime")
OUTPUT_FILE = "memory_monitor_output.txt"
SUMMARY_FILE = "memory_monitor_summary.json"


class TreeSampler:
    def __init__(self, payload, workdir: str):
        self.payload = payload
        self.workdir = workdir
        self.started = time.time()
        self.samples: List[Dict[str, float]] = []
        # running maxima and sums: summary() is asked for at every sample (live updates), so it must not rescan
        self._max: Dict[str, float] = {}
        self._sum: Dict[str, float] = {}
        self.cpu_seconds = 0.0  # CPU time of the tree so far, reaped children included (never goes down)
        self._last: Dict[int, Dict[str, float]] = {}  # pid -> last counters seen (for exited processes)
        self._output = os.path.join(workdir, OUTPUT_FILE)
        self._write_failed = False
        self._write(self._output, "w", "\t".join(COLUMNS) + "\n")

    def sample(self) -> Optional[Dict[str, float]]:
        import psutil

        row = {key: 0.0 for key in COLUMNS}
        now = time.time()
        row["Time"] = int(now)
        row["wtime"] = round(now - self.started, 1)
        seen = set()
        tree_cpu = 0.0
        for proc in self.payload.descendants():
            try:
                with proc.oneshot():
                    mem = proc.memory_full_info()
                    cpu = proc.cpu_times()
                    threads = proc.num_threads()
                    try:
                        io = proc.io_counters()
                    except (psutil.AccessDenied, AttributeError):
                        io = None
            except psutil.Error:
                continue
            seen.add(proc.pid)
            # a child's CPU moves into its parent's children_* times when it is reaped: counting both for the
            # live processes misses nothing short-lived (a shell loop of `date` calls) and counts nothing twice
            tree_cpu += cpu.user + cpu.system + getattr(cpu, "children_user", 0.0) + getattr(cpu, "children_system",
                                                                                             0.0)
            row["nprocs"] += 1
            row["nthreads"] += threads
            row["pss"] += getattr(mem, "pss", mem.rss) / 1024
            row["rss"] += mem.rss / 1024
            row["swap"] += getattr(mem, "swap", 0) / 1024
            row["vmem"] += mem.vms / 1024
            self._last[proc.pid] = {
                "utime": cpu.user, "stime": cpu.system,
                "rchar": getattr(io, "read_chars", 0) if io else 0, "wchar": getattr(io, "write_chars", 0) if io else 0,
                "read_bytes": io.read_bytes if io else 0, "write_bytes": io.write_bytes if io else 0,
            }
        for counters in self._last.values():  # alive ones and those that exited since: totals only grow
            for key in COUNTERS:
                row[key] += counters[key]
        if not seen:
            return None
        self.cpu_seconds = max(self.cpu_seconds, tree_cpu)
        for key in MEMORY:
            row[key] = int(row[key])
        self.samples.append(row)
        for key in COLUMNS[1:]:
            self._max[key] = max(self._max.get(key, row[key]), row[key])
            self._sum[key] = self._sum.get(key, 0.0) + row[key]
        self._write(self._output, "a", "\t".join(str(int(row[key]) if key not in ("stime", "utime", "wtime")
                                                  else round(row[key], 2)) for key in COLUMNS) + "\n")
        return row

    def summary(self) -> Dict[str, Dict[str, float]]:
        if not self.samples:
            return {"Max": {}, "Avg": {}}
        count = len(self.samples)
        return {"Max": dict(self._max), "Avg": {key: round(total / count, 2) for key, total in self._sum.items()}}

    def write_summary(self) -> Dict[str, Dict[str, float]]:
        summary = self.summary()
        self._write(os.path.join(self.workdir, SUMMARY_FILE), "w", json.dumps(summary, indent=1, sort_keys=True))
        return summary

    def _write(self, path: str, mode: str, text: str) -> None:
        """The files are for the log tarball: a full disk (or a vanished work dir) costs them, never the job."""
        try:
            with open_to_write(path, append=mode == "a") as handle:  # never through a payload's symlink
                handle.write(text)
        except OSError as exc:
            if not self._write_failed:
                log.warning("memory monitor: cannot write %s: %s", path, exc)
            self._write_failed = True


def leak_fit(samples: List[Dict[str, float]]) -> Optional[Dict[str, float]]:
    """Least-squares slope (kB/s) of PSS+swap against time and the chi2 of the fit (memory-leak estimate).

    The first and last fifth of the samples are dropped (start-up and tear-down are not leaks), as Pilot 3 does
    with its `tails` option; None when there are too few samples to say anything.
    """
    if len(samples) < 5:
        return None
    cut = len(samples) // 5
    kept = samples[cut: len(samples) - cut] if cut else samples
    xs = [sample["wtime"] for sample in kept]
    ys = [sample["pss"] + sample["swap"] for sample in kept]
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
    intercept = mean_y - slope * mean_x
    chi2 = sum((y - (intercept + slope * x)) ** 2 / max(abs(intercept + slope * x), 1.0) for x, y in zip(xs, ys))
    return {"slope": round(slope, 3), "chi2": round(chi2, 3)}


def update_fields(summary: Dict[str, Dict[str, float]], wall: float) -> Dict[str, float]:
    """updateJob memory/IO fields (spec panda-server A.5) from a summary: kB for memory, bytes and bytes/s for IO."""
    mx, avg = summary.get("Max") or {}, summary.get("Avg") or {}
    if not mx:
        return {}
    fields = {"maxRSS": mx["rss"], "maxVMEM": mx["vmem"], "maxSWAP": mx["swap"], "maxPSS": mx["pss"],
              "avgRSS": avg["rss"], "avgVMEM": avg["vmem"], "avgSWAP": avg["swap"], "avgPSS": avg["pss"],
              "totRCHAR": mx["rchar"], "totWCHAR": mx["wchar"], "totRBYTES": mx["read_bytes"],
              "totWBYTES": mx["write_bytes"]}
    wall = max(wall, 1.0)
    for name, key in (("rateRCHAR", "rchar"), ("rateWCHAR", "wchar"), ("rateRBYTES", "read_bytes"),
                      ("rateWBYTES", "write_bytes")):
        fields[name] = mx[key] / wall
    return {key: int(value) for key, value in fields.items()}


def mean_cores(cpu_seconds: float, wall: float) -> float:
    """Cores the payload kept busy on average: its CPU time over its wall time (Pilot 3's meanCoreCount).

    Pilot 3 averages thread counts sampled with `ps`; CPU over wall counts only threads that ran, so a payload of
    eight idle threads reads 0, not 8.
    """
    if wall <= 0 or cpu_seconds <= 0:
        return 0.0
    return round(cpu_seconds / wall, 2)

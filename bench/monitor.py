#!/usr/bin/env python3
"""Cost of monitoring a payload: pilot CPU time per minute for payload trees of 1, 50 and 500 processes.

Each tree is a real process tree started the way the pilot starts payloads (own session, token in the
environment). The real JobMonitor does one tick -- a psutil pass over the tree (pss/rss/swap/vmem, I/O, CPU,
threads) plus every check with its work-dir scan -- and the CPU time of that tick (this process, user+system)
is measured. Cost per minute = CPU per tick x ticks per minute at the default interval ([Pilot]
memory_usage_verification_time, 60 s). Target (issue 5): < 1 % of one core at 500 processes.

usage: bench/monitor.py [--sizes 1,50,500] [--ticks 10] [--json FILE] [--baseline FILE]
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pilot.config import load_config  # noqa: E402
from pilot.jobparser import parse_job  # noqa: E402
from pilot.monitor.jobmonitor import JobMonitor  # noqa: E402
from pilot.payload.process import PayloadProcess  # noqa: E402
from pilot.queuedata import BUILTIN_LOCAL, from_dict  # noqa: E402
from pilot.trigger import Trigger  # noqa: E402
from pilot.settings import Settings  # noqa: E402


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(size: int, ticks: int, workdir: str) -> dict:
    script = f"for i in $(seq {size - 1}); do sleep 600 & done; sleep 600"
    proc = PayloadProcess(["/bin/bash", "-c", script], workdir, dict(os.environ), os.devnull, os.devnull)
    proc.start()
    deadline = time.time() + 30
    while len(proc.descendants()) < size and time.time() < deadline:
        time.sleep(0.05)
    config = load_config()
    ctx = types.SimpleNamespace(config=config, queuedata=from_dict(dict(BUILTIN_LOCAL), "LOCAL"),
                                paths=types.SimpleNamespace(main=workdir), abort=Trigger(),
                                settings=Settings(queue="Q", verify_proxy=True))
    job = parse_job({"PandaID": 1, "transformation": "sh"})
    job.workdir = workdir
    monitor = JobMonitor(ctx, job, proc)
    costs = []
    for _ in range(ticks):
        due = {"sample": 0.0, **{check: 0.0 for check in monitor.checks}}
        before = cpu()
        monitor.tick(time.monotonic(), due, 60.0)
        costs.append(cpu() - before)
    seen = len(proc.descendants())
    proc.kill_tree(2.0)
    proc.proc.wait()
    per_tick = statistics.median(costs)
    interval = float(config.pilot.memory_usage_verification_time)
    per_minute = per_tick * 60.0 / interval
    return {"processes": seen, "cpu_ms_per_tick": round(per_tick * 1000, 2),
            "cpu_ms_per_minute": round(per_minute * 1000, 2), "core_percent": round(per_minute / 60 * 100, 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,50,500")
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument("--json", default="")
    parser.add_argument("--baseline", default="")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for size in (int(s) for s in args.sizes.split(",")):
            results[str(size)] = measure(size, args.ticks, workdir)
    print(f"{'tree':>6} {'seen':>6} {'CPU/tick ms':>12} {'CPU/min ms':>11} {'% of a core':>12}  target < 1 %")
    for size, row in results.items():
        verdict = "PASS" if row["core_percent"] < 1.0 else "FAIL"
        print(f"{size:>6} {row['processes']:>6} {row['cpu_ms_per_tick']:>12} {row['cpu_ms_per_minute']:>11} "
              f"{row['core_percent']:>12}  {verdict}")
    if args.baseline:
        with open(args.baseline) as handle:
            base = json.load(handle)
        for size, row in results.items():
            if size in base:
                ratio = row["cpu_ms_per_tick"] / max(base[size]["cpu_ms_per_tick"], 1e-9)
                print(f"{size:>6}: {ratio:.2f}x the baseline CPU per tick")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

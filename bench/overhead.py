#!/usr/bin/env python3
"""The pilot's own overhead around a trivial job, compared with PanDA Pilot 3 (spec pilot3-reference §14.2).

For each run, a real `pilot.py -q LOCAL --job-source local:DIR` process runs one job whose payload only writes
the time (`date +%s.%N`) to a file outside the work dir, then exits. Measured (wall clock, one clock):
  start->payload   process start (just before Popen) to the payload's timestamp
  payload->report  payload timestamp to the final report file's mtime
  report->exit     final report mtime to the moment wait() returns
  peak RSS         VmHWM of the pilot process (read from /proc while it runs)
  threads          the most threads the pilot process had
Targets (issue 2): 0.3 s / 0.3 s / 0.5 s / 30 MB. Pilot 3: 1.07 s / ~2 s / ~64 s / 40.5 MB / 19 threads.

usage: bench/overhead.py [--runs 10] [--json FILE] [--baseline FILE]
"""

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = {"start_to_payload": 0.3, "payload_to_report": 0.3, "report_to_exit": 0.5, "peak_rss_mb": 30.0}
PILOT3 = {"start_to_payload": 1.07, "payload_to_report": 2.0, "report_to_exit": 64.0, "peak_rss_mb": 40.5,
          "threads": 19}


def status_of(pid):
    rss = threads = 0
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    rss = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
    except OSError:
        pass
    return rss, threads


def one_run(base, python):
    jobs = os.path.join(base, "jobs")
    os.makedirs(jobs)
    stamp = os.path.join(base, "payload.stamp")
    job = {"PandaID": "1", "transformation": "sh", "jobPars": f"-c 'date +%s.%N > {stamp}'",
           "outFiles": "1.log.tgz", "logFile": "1.log.tgz", "scopeLog": "bench", "attemptNr": "1"}
    with open(os.path.join(jobs, "1.json"), "w") as handle:
        json.dump(job, handle)
    cmd = [python, os.path.join(TOP, "pilot.py"), "-q", "LOCAL", "--job-source", f"local:{jobs}", "-a", base]
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak_rss = peak_threads = 0
    while proc.poll() is None:
        rss, threads = status_of(proc.pid)
        peak_rss, peak_threads = max(peak_rss, rss), max(peak_threads, threads)
        time.sleep(0.002)
    ended = time.time()
    final = glob.glob(os.path.join(base, "PanDA_Pilot3_*", "reports", "1", "*.final.json"))
    if proc.returncode != 0 or not final or not os.path.exists(stamp):
        raise RuntimeError(f"pilot run failed (exit {proc.returncode}) in {base}")
    payload = float(open(stamp).read())
    report = os.stat(final[0]).st_mtime_ns / 1e9
    return {"start_to_payload": payload - started, "payload_to_report": report - payload,
            "report_to_exit": ended - report, "peak_rss_mb": peak_rss / 1024, "threads": peak_threads,
            "total": ended - started}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--json", default="")
    parser.add_argument("--baseline", default="")
    args = parser.parse_args()
    runs = []
    for index in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="pilot-bench-") as base:
            runs.append(one_run(base, args.python))
    keys = list(runs[0])
    summary = {key: {"median": statistics.median(r[key] for r in runs), "max": max(r[key] for r in runs)}
               for key in keys}
    print(f"{args.runs} runs of a trivial job ({args.python})")
    print(f"{'metric':<18} {'median':>9} {'max':>9} {'target':>8} {'pilot3':>8}  verdict")
    for key in keys:
        median, worst = summary[key]["median"], summary[key]["max"]
        target = TARGETS.get(key)
        verdict = "" if target is None else ("PASS" if median <= target else "FAIL")
        unit = "MB" if key.endswith("_mb") else ("" if key == "threads" else "s")
        print(f"{key:<18} {median:>8.3f}{unit[:1]:<1}{worst:>8.3f}{unit[:1]:<1} "
              f"{(str(target) if target is not None else '-'):>8} {str(PILOT3.get(key, '-')):>8}  {verdict}")
    if args.baseline:
        base = json.load(open(args.baseline))
        for key in keys:
            if key in base and base[key]["median"]:
                print(f"{key:<18} {summary[key]['median'] / base[key]['median']:.2f}x baseline")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The pilot's own overhead around a trivial job, compared with PanDA Pilot 3 (spec pilot3-reference §14.2).

Each run starts a real `pilot.py -q LOCAL -a DIR` process on one job definition: the payload is
`sh -c 'date +%s%N > START; date +%s%N > END; exit 0'` (no input or output files, only the job log), with
START and END outside the job's work dir (which the pilot removes at the end). Nothing in the pilot is changed
or instrumented. The job comes from, and the updates go to (--channel):
  local      a job file (--job-source local:DIR); updates are files under <main dir>/reports/ (default)
  panda      a fake PanDA server (/api/v1) on 127.0.0.1 over HTTP (--job-source panda --url ...): the pilot
             then loads requests; --server-delay S makes every answer S late, like a distant server
  panda-tls  the same over HTTPS with a self-signed certificate given as --cacert (needs `openssl`);
             REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE are dropped from the pilot's environment, as requests
             would let them override --cacert
All times are CLOCK_REALTIME in ns (time.time_ns(), `date +%s%N`, st_mtime_ns):

  start_to_payload   just before Popen -> START (the payload's first action)
  payload_to_report  END (the payload's last action) -> the final report: the mtime of
                     reports/<PandaID>/*.final.json, or when the server received the final update_job
  report_to_exit     the final report -> the moment the benchmark reaps the pilot (polled every --interval s)
  total              just before Popen -> reaped
  peak_rss_mb        VmHWM of the pilot process itself, read from /proc/<pid>/status every --interval s
  tree_maxrss_mb     ru_maxrss from wait4(): the largest RSS of the pilot or any descendant it reaped; this is
                     what `/usr/bin/time -v` printed for Pilot 3 ("max RSS 40548 kB")
  threads            the most threads /proc/<pid>/status showed for the pilot process

Resolution: a few ms. A file mtime comes from the kernel's coarse clock (up to one tick, 1-10 ms, behind
CLOCK_REALTIME), which moves at most that much from payload_to_report to report_to_exit; exit is seen at most
one poll interval late; threads that live less than one interval can be missed.

Targets: 0.3 s / 0.3 s / 0.5 s / 30 MB (on the median of the runs). Pilot 3 (§14.2, one run, Harvester mode
with local files): payload started 1.07 s after exec, final update ~2 s after payload exit, exit ~64 s after
the final update (67.1 s in all), max RSS 40.5 MB, 19 threads.

usage: bench/overhead.py [--runs 10] [--channel local|panda|panda-tls] [--json FILE] [--baseline FILE]
"""

import argparse
import glob
import json
import os
import platform
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB_ID = "4243000001"

# metric: (unit, target or None, Pilot 3 figure or None, description)
METRICS = {
    "start_to_payload": ("s", 0.3, 1.07, "pilot start -> payload start"),
    "payload_to_report": ("s", 0.3, 2.0, "payload exit -> final report"),
    "report_to_exit": ("s", 0.5, 64.0, "final report -> pilot exit"),
    "total": ("s", None, 67.1, "pilot start -> pilot exit"),
    "peak_rss_mb": ("MB", 30.0, 40.5, "peak RSS of the pilot (VmHWM)"),
    "tree_maxrss_mb": ("MB", None, 40.5, "max RSS, pilot tree (wait4)"),
    "threads": ("", None, 19, "peak threads of the pilot"),
}


def read_status(pid):
    """(VmHWM kB, Threads) of a live process; (0, 0) once it is gone."""
    hwm = threads = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
                elif line.startswith(b"Threads:"):
                    threads = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return hwm, threads


def job_definition(stamps):
    start, end = (os.path.join(stamps, name) for name in ("start", "end"))
    return start, end, {
        "PandaID": JOB_ID, "jobDefinitionID": "1", "taskID": "4243", "attemptNr": "1", "jobName": "bench-true",
        "prodSourceLabel": "ptest", "transformation": "sh", "coreCount": "1",
        "jobPars": f"-c 'date +%s%N > {start}; date +%s%N > {end}; exit 0'",
        "inFiles": "", "outFiles": f"{JOB_ID}.job.log.tgz", "logFile": f"{JOB_ID}.job.log.tgz",
        "scopeLog": "bench", "realDatasets": "bench.log", "destinationDblock": "bench.log",
        "ddmEndPointOut": "LOCAL", "logGUID": f"00000000-0000-4000-8000-{int(JOB_ID):012d}",
    }


def write_job(jobs_dir, job):
    os.makedirs(jobs_dir)
    with open(os.path.join(jobs_dir, f"{JOB_ID}.json"), "w", encoding="utf-8") as handle:
        json.dump(job, handle)


class FakePanda:
    """A PanDA server stand-in (/api/v1, plain HTTP on 127.0.0.1): hands out `job` once, notes when the final
    update_job arrives (time.time_ns() on receipt, before answering) and the state it carried."""

    def __init__(self, job, tls_dir="", delay=0.0):
        self.job, self.served, self.final_ns, self.final_state, self.requests = job, False, 0, "", []
        self.delay = delay
        bench = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the pilot's requests.Session expects
            disable_nagle_algorithm = True  # else each small reply waits ~40 ms for the client's delayed ACK

            def log_message(self, *_args):
                pass

            def _answer(self, data):
                body = json.dumps({"success": True, "message": "", "data": data}).encode()
                head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                        f"Connection: keep-alive\r\n\r\n").encode()
                self.wfile.write(head + body)  # one segment

            def do_GET(self):
                bench.requests.append(("GET", self.path))
                time.sleep(bench.delay)
                self._answer([])  # metaconfig/get_resource_types: none

            def do_POST(self):
                received = time.time_ns()
                text = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
                bench.requests.append(("POST", self.path))
                time.sleep(bench.delay)  # a distant server: the final update counts as arrived before this
                if self.path.endswith("/acquire_jobs"):
                    jobs = [] if bench.served else [bench.job]
                    bench.served = True
                    self._answer({"StatusCode": 0, "jobs": jobs})
                    return
                if self.path.endswith("/update_job"):
                    try:
                        state = json.loads(text).get("job_status", "")
                    except ValueError:
                        state = ""
                    if state in ("finished", "failed", "holding", "closed", "cancelled"):
                        bench.final_ns, bench.final_state = received, state
                self._answer({"StatusCode": 0})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.cacert = ""
        if tls_dir:
            self.cacert = os.path.join(tls_dir, "cert.pem")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.cacert, os.path.join(tls_dir, "key.pem"))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.url = self.url.replace("http://", "https://")
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def make_certificate(folder):
    """A self-signed certificate for 127.0.0.1 (the pilot gets it as --cacert), made with the openssl command."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", os.path.join(folder, "key.pem"),
                    "-out", os.path.join(folder, "cert.pem")], check=True, capture_output=True)


def read_ns(path):
    with open(path, encoding="ascii") as handle:
        return int(handle.read().strip())


def one_run(base, python, pilot, interval, timeout, channel, tls_dir, delay):
    stamps = os.path.join(base, "stamps")
    os.makedirs(stamps)
    start_file, end_file, job = job_definition(stamps)
    cmd = [python, pilot, "-q", "LOCAL", "-a", base]
    server, env = None, None
    if channel == "panda-tls":  # requests lets these override the pilot's --cacert (session.verify)
        env = {key: value for key, value in os.environ.items() if key not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    if channel.startswith("panda"):
        server = FakePanda(job, tls_dir if channel == "panda-tls" else "", delay)
        cmd += ["--job-source", "panda", "--url", server.url] + (["--cacert", server.cacert] if server.cacert else [])
    else:
        jobs_dir = os.path.join(base, "jobs")
        write_job(jobs_dir, job)
        cmd += ["--job-source", f"local:{jobs_dir}"]
    try:
        return measure(cmd, env, base, interval, timeout, server, start_file, end_file)
    finally:
        if server:
            server.close()


def measure(cmd, env, base, interval, timeout, server, start_file, end_file):
    with open(os.path.join(base, "pilot.stderr"), "wb") as err:
        t_start = time.time_ns()
        proc = subprocess.Popen(cmd, cwd=base, env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        deadline = time.monotonic() + timeout
        peak_hwm = peak_threads = 0
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"pilot still running after {timeout} s: killed")
            hwm, threads = read_status(proc.pid)  # before wait4: a reaped pid has no /proc entry
            peak_hwm, peak_threads = max(peak_hwm, hwm), max(peak_threads, threads)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                t_exit = time.time_ns()
                break
            time.sleep(interval)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    problems = []
    if proc.returncode != 0:
        problems.append(f"pilot exit code {proc.returncode}")
    if server:
        t_report = server.final_ns
        if server.final_state != "finished":
            problems.append(f"final update_job state {server.final_state or 'never received'!r}, want 'finished'")
    else:
        finals = glob.glob(os.path.join(base, "PanDA_Pilot3_*", "reports", JOB_ID, "*.final.json"))
        if len(finals) != 1 or not finals[0].endswith("-finished.final.json"):
            problems.append(f"final report(s) {[os.path.basename(f) for f in finals]} (want one *-finished.final.json)")
        else:
            t_report = os.stat(finals[0]).st_mtime_ns
    if not (os.path.exists(start_file) and os.path.exists(end_file)):
        problems.append("the payload did not write its time stamps")
    if problems:
        raise RuntimeError("; ".join(problems))
    t_payload_start, t_payload_end = read_ns(start_file), read_ns(end_file)
    return {
        "start_to_payload": (t_payload_start - t_start) / 1e9,
        "payload_to_report": (t_report - t_payload_end) / 1e9,
        "report_to_exit": (t_exit - t_report) / 1e9,
        "total": (t_exit - t_start) / 1e9,
        "peak_rss_mb": peak_hwm / 1024,
        "tree_maxrss_mb": usage.ru_maxrss / 1024,  # kB on Linux
        "threads": peak_threads,
    }


def tail(path, lines=30):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


def fmt(value, unit):
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:g}"


def verdict(median, worst, target):
    if target is None:
        return ""
    if median > target:
        return "FAIL"
    return "PASS" if worst <= target else "PASS (max over)"


def print_table(summary, runs, channel, delay):
    late = f", server answers {delay:g} s late" if delay and channel != "local" else ""
    print(f"{runs} runs of a trivial job (payload `sh -c 'date; date; exit 0'`, log file only), "
          f"{channel} channel{late}")
    head = f"{'metric':<18} {'what':<30} {'median':>9} {'max':>9} {'target':>8} {'Pilot 3':>8}  verdict"
    print(head)
    print("-" * len(head))
    for key, (unit, target, pilot3, what) in METRICS.items():
        median, worst = summary[key]["median"], summary[key]["max"]
        print(f"{key:<18} {what:<30} {fmt(median, unit):>9} {fmt(worst, unit):>9} {fmt(target, unit):>8} "
              f"{fmt(pilot3, unit):>8}  {verdict(median, worst, target)}")


def load_baseline(path):
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        sys.exit(f"overhead.py: cannot read baseline {path}: {exc}")
    return data.get("summary", data), data.get("meta", {})  # also the older format: the summary alone


def print_comparison(summary, baseline, path, args):
    base, meta = baseline
    print(f"\ncompared with {path} (ratio = now / baseline; < 1 is better; the machine is noisy, "
          f"so look for ratios well away from 1)")
    for key, now in (("channel", args.channel), ("server_delay", args.server_delay)):
        if key in meta and meta[key] != now:
            print(f"warning: the baseline ran with {key} {meta[key]!r}, this run with {now!r}")
    head = f"{'metric':<18} {'median':>9} {'baseline':>9} {'ratio':>6} {'max':>9} {'baseline':>9} {'ratio':>6}"
    print(head)
    print("-" * len(head))
    for key, (unit, *_rest) in METRICS.items():
        if key not in base:
            continue
        row = f"{key:<18}"
        for stat in ("median", "max"):
            now, old = summary[key][stat], base[key].get(stat)
            ratio = f"{now / old:.2f}x" if old else "-"
            row += f" {fmt(now, unit):>9} {fmt(old, unit):>9} {ratio:>6}"
        print(row)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--runs", type=int, default=10, help="measured runs (default 10)")
    parser.add_argument("--warmup", type=int, default=0, help="unmeasured runs first (default 0)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for pilot.py (default: this one)")
    parser.add_argument("--pilot", default=os.path.join(TOP, "pilot.py"),
                        help="pilot.py to run (default: this checkout's; another checkout's to compare branches)")
    parser.add_argument("--channel", choices=("local", "panda", "panda-tls"), default="local",
                        help="local: job and reports as files (default); panda: a fake PanDA server on 127.0.0.1 "
                             "over HTTP (the pilot then loads requests); panda-tls: the same over HTTPS with a "
                             "self-signed certificate (needs the openssl command)")
    parser.add_argument("--server-delay", type=float, default=0.0,
                        help="panda channels: the fake server answers each request this many s late (a distant "
                             "server; shows how many round trips lie on the path to the payload)")
    parser.add_argument("--interval", type=float, default=0.002, help="/proc and exit poll interval, s")
    parser.add_argument("--timeout", type=float, default=60, help="kill a pilot run after this many s (60)")
    parser.add_argument("--json", default="", help="write the results (summary and every run) to FILE")
    parser.add_argument("--baseline", default="", help="compare with the --json FILE of an earlier run")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory (printed)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    baseline = load_baseline(args.baseline) if args.baseline else None  # a bad FILE fails before the runs
    tls_dir = ""
    if args.channel == "panda-tls":
        tls_dir = tempfile.mkdtemp(prefix="pilot-bench-tls-")
        make_certificate(tls_dir)
    try:
        return run_all(args, baseline, tls_dir)
    finally:
        if tls_dir:
            shutil.rmtree(tls_dir, ignore_errors=True)


def run_all(args, baseline, tls_dir):
    runs = []
    for index in range(args.warmup + args.runs):
        base = tempfile.mkdtemp(prefix="pilot-bench-")
        try:
            result = one_run(base, args.python, args.pilot, args.interval, args.timeout, args.channel, tls_dir,
                             args.server_delay)
        except RuntimeError as exc:
            print(f"run {index + 1}: {exc}; kept {base}; the pilot's stderr ends with:", file=sys.stderr)
            print(tail(os.path.join(base, "pilot.stderr")), file=sys.stderr)
            return 1
        if args.keep:
            print(f"run {index + 1}: {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
        if index >= args.warmup:
            runs.append(result)
    summary = {key: {"median": statistics.median(r[key] for r in runs), "max": max(r[key] for r in runs),
                     "min": min(r[key] for r in runs)} for key in METRICS}
    print_table(summary, len(runs), args.channel, args.server_delay)
    failed = [key for key, (_u, target, *_r) in METRICS.items() if target is not None
              and summary[key]["median"] > target]
    print(f"\ntargets: {'all met' if not failed else 'FAILED: ' + ', '.join(failed)} (verdict on the median)")
    if args.baseline:
        print_comparison(summary, baseline, args.baseline, args)
    if args.json:
        meta = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
                "cpus": os.cpu_count(), "python": args.python, "pilot": args.pilot,
                "python_version": subprocess.run([args.python, "-c", "import sys; print(sys.version.split()[0])"],
                                                 capture_output=True, text=True).stdout.strip(),
                "load_avg": os.getloadavg(), "runs": len(runs), "warmup": args.warmup, "channel": args.channel,
                "server_delay": args.server_delay,
                "targets": {k: m[1] for k, m in METRICS.items() if m[1] is not None},
                "pilot3": {k: m[2] for k, m in METRICS.items() if m[2] is not None}}
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"meta": meta, "summary": summary, "runs": runs}, handle, indent=1)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

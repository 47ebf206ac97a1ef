#!/usr/bin/env python3
"""Kill latency: how long a payload runs on after the server decided to kill its job, and what it costs in requests.

A stand-in PanDA server (/api/v1 over HTTP on 127.0.0.1) hands out one job running `sleep 600`. Once the pilot has
reported it running, the server waits a random time (uniform over one heartbeat period, so the kill falls anywhere
in the pilot's schedule), then marks the job `tobekilled`: from then on update_job replies and job/get_status
answers carry the command, as the real server does. Measured per run, CLOCK_REALTIME:

  latency    kill marked -> the final update (failed, 1144) received by the server
  requests   periodic heartbeats (update_job after the first running one) + job/get_status calls per job-minute
             while the job ran (the load side of the trade-off; short runs make it noisy)

for each [Pilot] command_check in --checks (0 = heartbeats only) with [Pilot] heartbeat = --heartbeat. The worst case
is min(heartbeat, command_check) plus the payload's kill; the real server's figure is measured by
tests/integration/test_panda_matching.py::test_kill_latency_with_command_check.

usage: bench/kill_latency.py [--heartbeat 20] [--checks 0,2,5] [--runs 3]
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PILOT = os.path.join(REPO, "pilot.py")
JOB_ID = 4242


class FakePanda:
    def __init__(self, heartbeat):
        self.served = False
        self.kill_at = 0.0  # time.time() when the job was marked tobekilled
        self.running_at = 0.0
        self.final_at = 0.0
        self.final_code = None
        self.calls = {"update_job": 0, "get_status": 0}
        self.heartbeat = heartbeat
        bench = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                pass

            def _answer(self, data, success=True, message=""):
                body = json.dumps({"success": success, "message": message, "data": data}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _command(self):
                return "tobekilled" if bench.kill_at and time.time() >= bench.kill_at else None

            def do_GET(self):
                if "/job/get_status" in self.path:
                    bench.calls["get_status"] += 1
                    self._answer([{"status": "running", "command": self._command()}])
                else:
                    self._answer([])

            def do_POST(self):
                text = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
                body = json.loads(text) if text.startswith("{") else {}
                if self.path.endswith("/acquire_jobs"):
                    if bench.served:
                        self._answer(None, False, "No jobs in PanDA")
                        return
                    bench.served = True
                    job = {"PandaID": JOB_ID, "transformation": "sh", "jobPars": "-c 'sleep 600'", "attemptNr": 1,
                           "jobName": "bench-kill", "prodSourceLabel": "ptest", "coreCount": 1, "inFiles": "",
                           "outFiles": f"{JOB_ID}.log.tgz", "logFile": f"{JOB_ID}.log.tgz", "scopeLog": "bench",
                           "realDatasets": "bench.log", "destinationDblock": "bench.log", "ddmEndPointOut": "LOCAL",
                           "logGUID": "00000000-0000-4000-8000-000000004242", "StatusCode": 0}
                    self._answer({"StatusCode": 0, "jobs": [job]})
                    return
                if self.path.endswith("/update_job"):
                    state = body.get("job_status")
                    if state in ("running", "starting"):
                        bench.calls["update_job"] += 1
                    if state == "running" and not bench.running_at:
                        bench.running_at = time.time()
                        bench.kill_at = bench.running_at + random.uniform(0, bench.heartbeat)
                    if state in ("failed", "finished", "holding"):
                        bench.final_at, bench.final_code = time.time(), body.get("pilot_error_code")
                    self._answer({"StatusCode": 0, "command": self._command()})
                    return
                self._answer({})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def one_run(heartbeat, check, timeout):
    server = FakePanda(heartbeat)
    with tempfile.TemporaryDirectory(prefix="pilot-kill-bench-") as base:
        env = dict(os.environ, PILOT_CFG_PILOT_HEARTBEAT=str(heartbeat), PILOT_CFG_PILOT_COMMAND_CHECK=str(check))
        for name in ("OIDC_AUTH_TOKEN", "PANDA_AUTH_TOKEN", "HARVESTER_ID", "HARVESTER_WORKER_ID"):
            env.pop(name, None)
        cmd = [sys.executable, PILOT, "-q", "LOCAL", "-a", base, "--job-source", "panda", "--url", server.url]
        with open(os.path.join(base, "stderr"), "wb") as err:
            proc = subprocess.Popen(cmd, cwd=base, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                    stdin=subprocess.DEVNULL)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        server.close()
        if not server.final_at or not server.kill_at:
            tail = open(os.path.join(base, "stderr"), encoding="utf-8", errors="replace").read()[-1500:]
            raise SystemExit(f"no final update after a kill (check {check}):\n{tail}")
    minutes = max(1e-9, (server.final_at - server.running_at) / 60.0)
    periodic = max(0, server.calls["update_job"] - 2) + server.calls["get_status"]  # not the starting/first running
    return (server.final_at - server.kill_at, periodic / minutes,
            server.final_code)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heartbeat", type=int, default=20, help="[Pilot] heartbeat in seconds (default 20)")
    parser.add_argument("--checks", default="0,2,5", help="[Pilot] command_check values, comma separated")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"heartbeat {args.heartbeat} s, kill at a random time within one heartbeat period, {args.runs} run(s)")
    print(f"{'command_check':>13}  {'latency median':>14}  {'latency max':>11}  {'requests/job-min':>16}  code")
    for check in (int(value) for value in args.checks.split(",")):
        results = [one_run(args.heartbeat, check, timeout=args.heartbeat * 3 + 60) for _ in range(args.runs)]
        latencies = [latency for latency, _rate, _code in results]
        rate = statistics.median(rate for _latency, rate, _code in results)
        codes = sorted({str(code) for _latency, _rate, code in results})
        print(f"{check:>13}  {statistics.median(latencies):>12.2f} s  {max(latencies):>9.2f} s  {rate:>16.2f}  "
              f"{','.join(codes)}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Event-service throughput and overhead: one event-service job of N ranges (W s of work each) against a plain
job doing the same work (N x W s, N outputs), both through pilot.py, the real PanDA server and a real S3 server
(the test harness's: tests/integration/panda_server.py, tests/integration/s3server.py).

Prints ranges/s and the overhead per range, (ES wall - plain wall) / N, as a share of W (goal: <= 5 % at
W = 1 s). Both pilots store their outputs on the S3 server and report to the same server, so what is left is
what the event service costs: asking for ranges, feeding them, per-range stage-out and updates.

    .venv/bin/python bench/es.py [--ranges 30] [--work 1.0] [--runs 1]

Set PANDA_TEST_BASE / PANDA_TEST_HTTP_PORT / PANDA_TEST_PG_PORT / PANDA_TEST_IDP_PORT to keep off a server
another run is using.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.panda_server import PandaServer  # noqa: E402
from tests.integration.s3server import running_s3  # noqa: E402
from tests.integration.test_eventservice import FINISHED, es_job, range_states, start_pilot  # noqa: E402

PLAIN = ("-c 'import time\nfor i in range({n}):\n    time.sleep({w})\n"
         "    open(\"out_%d.dat\" % i, \"w\").write(\"x\" * 64)\n'")


def timed_pilot(panda, s3, workdir):
    started = time.monotonic()
    proc = start_pilot(panda, s3, workdir)
    out, err = proc.communicate(timeout=3600)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"pilot failed ({proc.returncode}):\n{err[-3000:]}")
    payload = [line for line in err.splitlines() if "summary:   time:" in line]
    return wall, payload[-1].split("time:", 1)[1].strip() if payload else "?"


def _payload(times: str) -> float:
    """The pilot's own 'payload N s' figure from its summary line."""
    for part in times.split(","):
        if part.strip().startswith("payload "):
            return float(part.split()[1])
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranges", type=int, default=30)
    parser.add_argument("--work", type=float, default=1.0, help="seconds of payload work per range")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    n, w = args.ranges, args.work
    panda = PandaServer()
    panda.install()
    panda.setup()
    results = []
    try:
        with running_s3() as s3:
            for run in range(args.runs):
                task, jobset = 95000 + run, 75000 + run
                es_job(panda, task, jobset, n, f"--sleep {w}")
                with tempfile.TemporaryDirectory(prefix="bench-es-") as tmp:
                    es_wall, es_times = timed_pilot(panda, s3, Path(tmp))
                states = range_states(panda, task)
                if states != {FINISHED: n}:
                    sys.exit(f"ranges not all finished: {states}")
                panda.drain()
                panda.submit_job(transformation="python3", job_pars=PLAIN.format(n=n, w=w),
                                 outputs=[f"out_{i}.dat" for i in range(n)])
                with tempfile.TemporaryDirectory(prefix="bench-plain-") as tmp:
                    plain_wall, plain_times = timed_pilot(panda, s3, Path(tmp))
                per_range = (es_wall - plain_wall) / n
                results.append((es_wall, plain_wall, per_range, _payload(es_times) - _payload(plain_times)))
                print(f"run {run + 1}: event service {es_wall:.2f} s ({es_times}); plain {plain_wall:.2f} s "
                      f"({plain_times})")
    finally:
        panda.shutdown()
    es_wall = statistics.median(r[0] for r in results)
    plain_wall = statistics.median(r[1] for r in results)
    per_range = statistics.median(r[2] for r in results)
    share = per_range / w * 100 if w else float("nan")
    in_payload = statistics.median(r[3] for r in results) / n
    print(f"{n} ranges x {w:g} s: {n / es_wall:.3f} ranges/s (ideal {1 / w if w else float('inf'):.3f}); "
          f"event service {es_wall:.2f} s vs plain job {plain_wall:.2f} s: overhead {per_range * 1000:+.1f} ms "
          f"per range = {share:+.2f} % of the work per range -> {'PASS' if share <= 5 else 'FAIL'} (goal <= 5 %); "
          f"payload phase alone: {in_payload * 1000:+.1f} ms per range ({in_payload / w * 100 if w else 0:+.2f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

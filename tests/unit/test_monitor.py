"""The job monitor's parts without pilot.py: each check on a made-up state, the sampler on a real process tree,
and the monitor thread's schedule."""

import json
import os
import subprocess
import sys
import time
import types

from pilot.config import load_config
from pilot.jobparser import parse_job
from pilot.monitor import checks as c
from pilot.monitor.jobmonitor import JobMonitor
from pilot.monitor.sampler import SUMMARY_FILE, TreeSampler, leak_fit, update_fields
from pilot.queuedata import QueueData
from pilot.trigger import Trigger
from tests.unit.helpers import OneProcessTree


def ctx(tmp_path, **pilot):
    env = {f"PILOT_CFG_PILOT_{key.upper()}": str(value) for key, value in pilot.items()}
    abort = Trigger("abort")
    return types.SimpleNamespace(config=load_config(env=env), queuedata=QueueData(name="Q"), resource_types={},
                                 paths=types.SimpleNamespace(main=str(tmp_path)), abort=abort,
                                 request_abort=abort.fire, settings=types.SimpleNamespace(verify_proxy=False))


def job(tmp_path, **fields):
    definition = {"PandaID": 1, "transformation": "sh", "outFiles": "out.root", "scopeOut": "s",
                  "destinationDblock": "d", "realDatasets": "d", "ddmEndPointOut": "E"}
    definition.update(fields)
    j = parse_job(definition)
    j.workdir = str(tmp_path)
    return j


def state(ctx_, job_, **kw):
    return c.MonitorState(ctx=ctx_, job=job_, started=kw.pop("started", time.time()), **kw)


def test_memory_check_uses_the_jobs_limit(tmp_path):
    x, j = ctx(tmp_path), job(tmp_path, minRamCount="2000")
    check = c.MemoryCheck()
    assert check.run(state(x, j, sample={"pss": 1000 * 1024})) is None
    code, diag = check.run(state(x, j, sample={"pss": 5000 * 1024}))
    assert code == 1235 and "exceeds the memory limit" in diag
    assert check.run(state(x, job(tmp_path), sample={"pss": 1 << 40})) is None  # no limit known: never fires


def test_size_checks(tmp_path):
    x, j = ctx(tmp_path, local_size_limit_stdout_kb=1, maximum_output_file_size_mb=1), job(tmp_path)
    (tmp_path / "payload.stdout").write_bytes(b"x" * 4096)
    (tmp_path / "out.root").write_bytes(b"x" * (2 << 20))
    scan = c.WorkdirScan.of(str(tmp_path))
    assert scan.sizes["payload.stdout"] == 4096 and scan.total_bytes >= (2 << 20)
    assert c.StdoutSizeCheck().run(state(x, j, scan=scan))[0] == 1106
    assert c.OutputSizeCheck().run(state(x, j, scan=scan))[0] == 1124
    x.queuedata.maxwdir = 1
    assert c.WorkdirSizeCheck().run(state(x, j, scan=scan))[0] == 1104


def test_looping_check_counts_idle_time_but_not_suspension(tmp_path):
    x, j = ctx(tmp_path, looping_limit_default=60, looping_limit_min_default=60), job(tmp_path)
    old = time.time() - 120
    (tmp_path / "data").write_text("x")
    os.utime(tmp_path / "data", (old, old))
    scan = c.WorkdirScan.of(str(tmp_path))
    assert c.LoopingCheck().run(state(x, j, scan=scan, started=old))[0] == 1150
    assert c.LoopingCheck().run(state(x, j, scan=scan, started=old, suspended=100)) is None
    (tmp_path / "fresh").write_text("x")
    assert c.LoopingCheck().run(state(x, j, scan=c.WorkdirScan.of(str(tmp_path)), started=old)) is None


def test_kill_file_and_walltime(tmp_path):
    x, j = ctx(tmp_path), job(tmp_path, maxWalltime="10")
    assert c.KillFileCheck().run(state(x, j)) is None
    (tmp_path / x.config.pilot.kill_instruction_filename).write_text("")
    assert c.KillFileCheck().run(state(x, j))[0] == 1363
    assert c.WalltimeCheck().run(state(x, j, started=time.time() - 60)) is None  # the queue does not ask for it
    x.queuedata.params["job_maxwalltime"] = True
    assert c.WalltimeCheck().run(state(x, j, started=time.time() - 60))[0] == 1213
    assert c.WalltimeCheck().run(state(x, j, started=time.time())) is None


def test_default_checks_come_from_the_registry():
    names = [check.name for check in c.default_checks()]
    assert names[0] == "memory" and "looping" in names and "proxy" in names


def test_sampler_on_a_real_process(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "x = bytearray(30 << 20); import time; time.sleep(30)"])
    try:
        sampler = TreeSampler(OneProcessTree(proc), str(tmp_path))
        deadline = time.time() + 10
        row = None
        while time.time() < deadline:  # until the child has allocated its 30 MB
            row = sampler.sample()
            if row and row["rss"] > 30 * 1024:
                break
            time.sleep(0.05)
        assert row and row["nprocs"] == 1 and row["rss"] > 30 * 1024 and row["pss"] > 0
    finally:
        proc.kill()
        proc.wait()
    assert sampler.sample() is None  # nothing left to sample
    summary = sampler.write_summary()
    assert json.load(open(tmp_path / SUMMARY_FILE)) == json.loads(json.dumps(summary))
    fields = update_fields(summary, 10.0)
    assert fields["maxRSS"] > 30 * 1024 and "rateRCHAR" in fields
    lines = open(tmp_path / "memory_monitor_output.txt").read().splitlines()
    assert lines[0].startswith("Time\tnprocs") and len(lines) >= 2


def test_leak_fit():
    rows = [{"wtime": float(t), "pss": 1000.0 + 10 * t, "swap": 0.0} for t in range(20)]
    assert leak_fit(rows)["slope"] == 10.0
    assert leak_fit(rows[:3]) is None


def test_monitor_thread_fires_the_kill_of_a_failing_check(tmp_path):
    class Fires(c.Check):
        name = "always"

        def interval(self, ctx_):
            return 0.05

        def run(self, st):
            return 1150, "test check fired"

    x, j = ctx(tmp_path), job(tmp_path)
    monitor = JobMonitor(x, j, OneProcessTree(subprocess.Popen(["true"])), checks=[Fires()])
    monitor.start()
    assert j.kill.wait(5) and j.kill.code == 1150
    monitor.join(5)
    assert not monitor.is_alive()


def test_monitor_thread_that_fails_kills_its_job(tmp_path):
    class Broken(c.Check):
        name = "broken"

        def interval(self, ctx_):
            return 0.05

        def run(self, st):
            raise AttributeError("bug")

    x, j = ctx(tmp_path), job(tmp_path)
    monitor = JobMonitor(x, j, OneProcessTree(subprocess.Popen(["true"])), checks=[Broken()])
    monitor.start()
    assert j.kill.wait(5) and j.kill.code == 1319 and "AttributeError: bug" in j.kill.reason

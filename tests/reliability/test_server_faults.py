"""Server faults between the pilot and the real PanDA server: the pilot backs off, never spins, and never loses
its final update."""

import glob
import json
import os
import subprocess
import sys
import time

import pytest

from tests.e2e.pilotrun import PILOT, PilotRun
from tests.reliability.fault_proxy import FaultProxy

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def run_pilot(panda, proxy, tmp_path, *extra, env=None, timeout=180):
    queue = tmp_path / "queue.json"
    queue.write_text(json.dumps({"nickname": panda.queue, "panda_resource": panda.queue, "state": "ACTIVE",
                                 "copytools": {"mv": {}}, "acopytools": {"default": ["mv"]}}))
    environ = dict(os.environ, **panda.pilot_env(tmp_path), PILOT_CFG_PILOT_UPDATE_RETRY_INITIAL="0.5",
                   PILOT_CFG_PILOT_UPDATE_RETRY_MAX="2.0", PILOT_CFG_PILOT_GETJOB_RETRY_INITIAL="0.5",
                   PILOT_CFG_PILOT_HTTP_MAXTIME="3", **(env or {}))
    proc = subprocess.run([sys.executable, PILOT, "-q", panda.queue, "--url", proxy.url, "--queuedata-url",
                           str(queue), "-j", "managed", "-a", str(tmp_path), *extra], cwd=str(tmp_path),
                          env=environ, capture_output=True, text=True, timeout=timeout)
    return PilotRun(str(tmp_path), proc, proc.stdout, proc.stderr)


def gaps(calls):
    times = [entry[0] for entry in calls]
    return [b - a for a, b in zip(times, times[1:])]


def test_job_requests_back_off_on_errors(panda, tmp_path):
    panda_id = panda.submit_job(job_pars="-c 'exit 0'")
    with FaultProxy(panda.url) as proxy:
        proxy.plan["pilot/acquire_jobs"] = ["500", "close", "slow"]  # (a truncated reply would lose the job)
        run = run_pilot(panda, proxy, tmp_path, "-x", "5")
    assert run.returncode == 0, run.stderr[-3000:]
    calls = proxy.calls("pilot/acquire_jobs")
    assert len(calls) == 3 and all(gap >= 0.3 for gap in gaps(calls)), gaps(calls)  # backed off, never spun
    assert panda.job_status(panda_id) == "holding"


def test_final_update_survives_500_hang_truncation_and_slowness(panda, tmp_path):
    """The final update survives five faulty tries in a row and is delivered at the sixth. Over 10 s: one try hangs
    for 6 s, one answers slowly, and the pilot backs off between tries; then the Adder runs."""
    panda_id = panda.submit_job(outputs=["o.dat"], job_pars="-c 'echo x > o.dat'")
    with FaultProxy(panda.url, hang_seconds=6) as proxy:
        proxy.plan["pilot/update_job"] = ["pass", "slow"]  # starting, running
        proxy.plan["pilot/update_job"] += ["500", "hang", "close", "500", "slow"]  # the final one, 5 tries
        run = run_pilot(panda, proxy, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    finals = [c for c in proxy.calls("pilot/update_job")][2:]
    assert len(finals) == 5 and min(gaps(finals)) > 0.2
    assert not glob.glob(os.path.join(str(tmp_path), "PanDA_Pilot3_*", "spool", "*.update.json"))
    assert panda.archive(panda_id) == "finished"


def test_refused_final_update_is_kept_for_a_human(panda, tmp_path):
    panda_id = panda.submit_job(job_pars="-c 'exit 0'")
    with FaultProxy(panda.url) as proxy:
        proxy.plan["pilot/update_job"] = ["pass", "pass", "false"]
        run = run_pilot(panda, proxy, tmp_path)
    assert run.returncode == 79, run.stderr[-3000:]
    kept = glob.glob(os.path.join(str(tmp_path), "PanDA_Pilot3_*", "spool", "*.refused"))
    assert len(kept) == 1 and json.load(open(kept[0]))["data"]["jobId"] == str(panda_id)
    assert "injected refusal" in run.stderr


def test_unreachable_server_ends_the_pilot_with_79(panda, tmp_path):
    started = time.time()
    with FaultProxy(panda.url) as proxy:
        proxy.plan["pilot/acquire_jobs"] = ["close"] * 10
        run = run_pilot(panda, proxy, tmp_path, "-x", "3")
    assert run.returncode == 79 and len(proxy.calls("pilot/acquire_jobs")) == 3
    assert time.time() - started < 30


def test_pilot_sigkilled_while_retrying_final_update_is_replayed_by_next_pilot(panda, tmp_path):
    """SIGKILL cannot be caught: what saves the final state is that it was on disk before the first send.
    Over 10 s on a loaded machine: two pilot runs and the Adder."""
    import signal as _signal

    panda_id = panda.submit_job(outputs=["o.dat"], job_pars="-c 'sleep 2; echo x > o.dat'")
    queue = tmp_path / "queue.json"
    queue.write_text(json.dumps({"nickname": panda.queue, "panda_resource": panda.queue, "state": "ACTIVE",
                                 "copytools": {"mv": {}}, "acopytools": {"default": ["mv"]}}))
    env = dict(os.environ, **panda.pilot_env(tmp_path), PILOT_CFG_PILOT_UPDATE_RETRY_INITIAL="0.5")
    cmd = [sys.executable, PILOT, "-q", panda.queue, "--url", panda.url, "--queuedata-url", str(queue), "-j",
           "managed"]  # no -a: the pilot works in its launch dir, as a batch job's pilot does
    first = subprocess.Popen(cmd, cwd=str(tmp_path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    panda.wait_for(panda_id, {"running"}, timeout=60)
    panda.cut()
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not glob.glob(str(tmp_path / "spool" / "*.final.update.json")):
            time.sleep(0.1)
        assert glob.glob(str(tmp_path / "spool" / "*.final.update.json")), "final update not spooled"
        first.send_signal(_signal.SIGKILL)
        first.communicate(timeout=30)
    finally:
        panda.restore()
    second = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "replayed 1 spooled final update" in second.stderr
    assert not glob.glob(str(tmp_path / "spool" / "*.update.json"))
    assert panda.job_status(panda_id) == "holding"
    assert panda.archive(panda_id) == "finished"

"""End-to-end: a pilot whose own code fails (a bug, a missing module) says so with a code, never exits 0 silently.

The faults are injected by tests/e2e/shim/sitecustomize.py (PILOT_TEST_SHIM) into an unchanged pilot.py: no real
input makes the pilot's own threads fail today, and each of these failures once ended in exit 0 or a payload
running unwatched.
"""

import os

from tests.e2e.pilotrun import REPO, job_definition, run_pilot, write_job

SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim")


def shim_env(fault, **extra):
    path = os.pathsep.join([SHIM, REPO])
    return dict(os.environ, PYTHONPATH=path, PILOT_TEST_SHIM=fault, **extra)


def sleeping_job(jobdir, panda_id, seconds):
    write_job(jobdir, job_definition(panda_id, pars=f"-c 'sleep {seconds}'"))
    return "--job-source", f"local:{jobdir}"


def test_a_bug_in_the_channel_fetch_ends_the_pilot_with_1319(tmp_path):
    run = run_pilot(tmp_path, "--job-source", "local",
                    env=shim_env("raise:pilot.channels.local:LocalChannel.fetch:ValueError"))
    assert run.returncode == 1, run.stderr[-3000:]  # 1319 has no row of its own in Pilot 3's exit table
    log = run.pilotlog()
    assert "internal pilot error in thread retrieve: ValueError: injected by the test shim" in log
    assert log.count("Traceback") == 1  # logged once


def test_a_bug_parsing_a_claimed_job_reports_the_job(tmp_path):
    jobdir = tmp_path / "jobs"
    jobdir.mkdir()
    write_job(jobdir, job_definition(7001))
    run = run_pilot(tmp_path, "--job-source", f"local:{jobdir}",
                    env=shim_env("raise:pilot.jobparser:_Reader.integer:ValueError"))
    assert run.returncode == 1, run.stderr[-3000:]
    final = run.final(7001)  # the claimed job is reported, not lost
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1319
    assert "internal pilot error in job parser: ValueError" in final["pilotErrorDiag"]


def test_a_failing_job_monitor_kills_the_payload(tmp_path):
    """The sampler failing as it does in a Python without a usable psutil: the payload must not run unwatched."""
    jobdir = tmp_path / "jobs"
    jobdir.mkdir()
    run = run_pilot(tmp_path, *sleeping_job(jobdir, 7002, 30), timeout=25,
                    env=shim_env("raise:pilot.monitor.sampler:TreeSampler.sample:ImportError",
                                 PILOT_CFG_PILOT_MEMORY_USAGE_VERIFICATION_TIME="1"))
    assert run.returncode == 1, run.stderr[-3000:]
    final = run.final(7002)
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1319, final
    assert "internal pilot error in thread monitor-7002: ImportError" in final["pilotErrorDiag"]


def test_a_failing_heartbeat_kills_its_job(tmp_path):
    jobdir = tmp_path / "jobs"
    jobdir.mkdir()
    run = run_pilot(tmp_path, *sleeping_job(jobdir, 7003, 30), timeout=25,
                    env=shim_env("raise:pilot.monitor.heartbeat:Heartbeat.beat:RuntimeError"))
    assert run.returncode == 1, run.stderr[-3000:]
    final = run.final(7003)
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1319, final
    assert "internal pilot error in heartbeat: RuntimeError" in final["pilotErrorDiag"]


def test_a_missing_dependency_stops_the_pilot_before_any_job(tmp_path):
    for module in ("psutil", "requests"):
        base = tmp_path / module
        jobdir = base / "jobs"
        jobdir.mkdir(parents=True)
        path = write_job(jobdir, job_definition(7004))
        run = run_pilot(base, "--job-source", f"local:{jobdir}", env=shim_env(f"hide:{module}"))
        assert run.returncode == 76, run.stderr[-3000:]  # 1342 MIDDLEWAREIMPORTFAILURE
        assert f"1342 MIDDLEWAREIMPORTFAILURE: Python module(s) {module} missing" in run.stderr
        assert os.path.exists(path)  # the job was not taken
        assert not os.path.exists(os.path.join(run.main, "reports"))


def test_a_start_up_signal_that_python_swallowed_still_stops_the_pilot(tmp_path):
    """A SIGQUIT that lands where Python only prints what a handler raises (a weakref callback, as in the import
    lock's clean-up; seen once in the acceptance fuzz run): the pilot went on and ran every job. It must stop
    before taking one, with the signal's status."""
    jobdir = tmp_path / "jobs"
    jobdir.mkdir()
    run = run_pilot(tmp_path, *sleeping_job(jobdir, 7300001, 0),
                    env=shim_env("swallow:pilot.queuedata:load_queuedata:SIGQUIT"))
    assert "Exception ignored in" in run.stderr, run.stderr[-2000:]  # the shim really hit the swallowing path
    assert run.returncode == 128 + 3, run.stderr[-3000:]
    assert "interrupted by SIGQUIT during start-up" in run.stderr + run.pilotlog()
    assert "job_7300001.json" in os.listdir(jobdir)  # not taken
    assert "received" not in run.pilotlog()

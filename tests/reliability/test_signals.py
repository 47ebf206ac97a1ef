"""Signals at every stage of a real pilot run: the right code, a shipped log where possible, a final report, the
right exit code, nothing left running, all within the abort grace."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.e2e.pilotrun import PILOT, PilotRun, alive_pids, job_definition, write_job

SIGNALS = [(signal.SIGTERM, 1201), (signal.SIGINT, 1208), (signal.SIGUSR1, 1207), (signal.SIGXCPU, 1204),
           (signal.SIGQUIT, 1202), (signal.SIGHUP, 1200)]


def wait_for_line(path_glob, text, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        for path in glob.glob(path_glob):
            if text in open(path, errors="replace").read():
                return
        time.sleep(0.02)
    raise AssertionError(f"never saw {text!r} (pilot exit {proc.poll()})")


def descendants(pid):
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stage_setup(stage, tmp_path, jobdir):
    """(pilot extra args, env, log line that says the stage is under way, job id or None)."""
    storage = tmp_path / "storage"
    storage.mkdir()
    env = {"PILOT_CFG_PILOT_ABORT_GRACE": "20", "PILOT_CFG_PILOT_KILL_GRACE": "2"}
    if stage == "retrieve":  # Harvester PULL: the pilot waits for a job file
        ap = tmp_path / "ap"
        ap.mkdir()
        env.update({"PILOT_CFG_HARVESTER_JOB_POLL_INTERVAL": "0.1", "PILOT_CFG_HARVESTER_JOB_WAIT_LIMIT": "60"})
        return ["-z", "--harvester-workdir", str(ap), "--harvester-submit-mode", "PULL"], env, \
            "asked Harvester for", None
    if stage == "stagein":  # a 6 GB sparse input: long enough to be caught in the copy
        subprocess.run(["truncate", "-s", "6G", str(storage / "big.dat")], check=True)
        job = job_definition(1301, inputs=[("big.dat", (6 << 30, "00000001"))])
        job["checksum"] = "NULL"
        write_job(jobdir, job)
        return ["--job-source", f"local:{jobdir}", "--input-dir", str(storage)], env, "job 1301 validated", 1301
    if stage == "execute":
        write_job(jobdir, job_definition(1302, pars="-c 'sleep 300'"))
        return ["--job-source", f"local:{jobdir}"], env, "payload started", 1302
    if stage == "stageout":  # an incompressible 240 MB work dir in 3 MB files: the log tarball takes a while
        script = "for i in $(seq 80); do head -c 3000000 /dev/urandom > part$i.bin; done"
        write_job(jobdir, job_definition(1303, pars=f"-c '{script}'"))
        return ["--job-source", f"local:{jobdir}"], env, "payload exited with 0", 1303
    raise ValueError(stage)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["retrieve", "stagein", "execute", "stageout"])
@pytest.mark.parametrize("signum,code", SIGNALS, ids=[s.name for s, _ in SIGNALS])
def test_signal_during_stage(tmp_path, stage, signum, code):
    """A signal at each stage ends the pilot with 128 + signal, kills its processes, and reports the job. The
    stageout cases take over 10 s: the payload first writes hundreds of MB of random data for the log tarball."""
    jobdir = tmp_path / "jobs"
    jobdir.mkdir()
    extra, env, marker, panda_id = stage_setup(stage, tmp_path, jobdir)
    cmd = [sys.executable, PILOT, "-q", "LOCAL", "-a", str(tmp_path), *extra]
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), env=dict(os.environ, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    wait_for_line(os.path.join(str(tmp_path), "PanDA_Pilot3_*", "pilotlog.txt"), marker, proc)
    tree = descendants(proc.pid)
    sent = time.time()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    took = time.time() - sent
    run = PilotRun(str(tmp_path), proc, out, err)
    assert run.returncode == 128 + signum, err[-3000:]
    assert took < 20, f"took {took:.1f} s"
    assert alive_pids(tree) == [], "processes of the pilot survived it"
    assert "Traceback" not in err
    if panda_id is None:
        return
    final = run.final(panda_id)
    if stage == "stageout":  # the payload had finished: its result is kept (log shipped), the pilot then stops
        assert final["state"] in ("finished", "failed")
    else:
        assert final["state"] == "failed" and final["pilotErrorCode"] == code, final
        assert signal.Signals(signum).name in final["pilotErrorDiag"] or code == 1200
    if stage in ("execute", "stageout"):
        assert f"{panda_id}.job.log.tgz" in json.loads(final["xml"]), "the log must be shipped"


def test_payload_killed_by_sigkill_from_outside(tmp_path):
    jobdir = tmp_path / "jobs"
    jobdir.mkdir()
    write_job(jobdir, job_definition(1310, pars="-c 'sleep 300'"))
    proc = subprocess.Popen([sys.executable, PILOT, "-q", "LOCAL", "-a", str(tmp_path), "--job-source",
                             f"local:{jobdir}"], cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_for_line(os.path.join(str(tmp_path), "PanDA_Pilot3_*", "pilotlog.txt"), "payload started", proc)
    # "payload started" is logged once the shell is forked; its sleep child may take a moment to exist
    deadline = time.time() + 30
    sleepers = []
    while not sleepers and time.time() < deadline and proc.poll() is None:
        sleepers = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "sleep"]
        time.sleep(0.02)
    assert sleepers, "the payload's sleep never appeared"
    sleepers[0].kill()  # e.g. the OOM killer or an admin
    out, err = proc.communicate(timeout=60)
    final = PilotRun(str(tmp_path), proc, out, err).final(1310)
    assert proc.returncode == 0
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1305 and final["transExitCode"] == 137


def test_a_killed_pilots_final_update_stays_on_disk(tmp_path):
    """A pilot killed with SIGKILL cannot report; the next pilot in the same dir delivers what it spooled."""
    from pilot.channels.spool import Spool, pending_in

    main = tmp_path / "main"
    main.mkdir()
    spool = Spool(str(main / "spool"))
    spool.write("1311", {"jobId": "1311", "state": "failed", "pilotErrorCode": 1201}, final=True)
    assert len(list(pending_in(str(main / "spool")))) == 1  # what a killed pilot leaves behind

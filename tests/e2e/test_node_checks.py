"""pilot.py and the node: an announced shutdown (WLCG machine/job features) and the CVMFS check, end to end."""

import json
import os
import subprocess
import time

from tests.e2e.pilotrun import PilotRun, job_definition, pilot_cmd, run_pilot, write_job


def env_with(**extra):
    env = {key: value for key, value in os.environ.items() if key not in ("MACHINEFEATURES", "JOBFEATURES",
                                                                           "NO_CVMFS_OK")}
    env.update(extra)
    return env


def test_no_job_taken_when_the_node_shuts_down_too_soon(tmp_path, jobdir):
    """shutdowntime_job 15 min away leaves less than min_job_time (600 s) once the 10 min margin is kept."""
    features = tmp_path / "jobfeatures"
    features.mkdir()
    (features / "shutdowntime_job").write_text(str(int(time.time()) + 900))
    write_job(jobdir, job_definition(301, pars="-c 'echo ran > ran.txt'"))
    run = run_pilot(tmp_path, "--job-source", f"local:{jobdir}", env=env_with(JOBFEATURES=str(features)))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "node shutdown announced in $JOBFEATURES/shutdowntime_job" in run.stderr
    assert "no more jobs" in run.stderr and "lifetime left" in run.stderr
    assert run.reports(301) == [], "the job must not be taken"


def test_running_job_aborted_before_an_announced_shutdown(tmp_path, jobdir):
    """The site announces a shutdown while the payload runs: the job fails with 1213 shutdown_margin before it,
    the log still goes out, the pilot exits 81 (REACHEDMAXTIME), long before the payload would have ended."""
    features = tmp_path / "machinefeatures"
    features.mkdir()
    write_job(jobdir, job_definition(302, pars="-c 'sleep 120'"))
    env = env_with(MACHINEFEATURES=str(features), PILOT_CFG_PILOT_FEATURES_CHECK="0.5",
                   PILOT_CFG_PILOT_SHUTDOWN_MARGIN="600", PILOT_CFG_PILOT_MIN_JOB_TIME="60")
    proc = subprocess.Popen(pilot_cmd(tmp_path, "--job-source", f"local:{jobdir}"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(tmp_path), env=env, stdin=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while not list(tmp_path.glob("PanDA_Pilot3_*/PanDA_Pilot-302/payload.stdout")) and time.time() < deadline:
            time.sleep(0.1)
        # 10 min 3 s away: the abort is due 3 s from now
        (features / "shutdowntime.tmp").write_text(str(int(time.time()) + 603))
        os.replace(features / "shutdowntime.tmp", features / "shutdowntime")
        announced = time.time()
        out, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    run = PilotRun(str(tmp_path), proc, out, err)
    assert run.returncode == 81, run.stderr[-3000:]
    assert time.time() - announced < 30
    final = run.final(302)
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1213, final
    assert "node shutdown announced in $MACHINEFEATURES/shutdowntime" in final["pilotErrorDiag"]
    assert "302.job.log.tgz" in json.loads(final["xml"])


def fake_cvmfs(root, stamp):
    for repo in ("atlas.cern.ch", "sft.cern.ch"):
        (root / repo / "repo").mkdir(parents=True)
    (root / "sft.cern.ch" / "lcg").mkdir()
    (root / "sft.cern.ch" / "lcg" / "lastUpdate").write_text(f"2024-03-18 19:43:47 | lxcvmfs145.cern.ch | {stamp}\n")


def cvmfs_env(root, **extra):
    settings = {"PILOT_CFG_PILOT_CVMFS_ROOT": str(root),
                "PILOT_CFG_PILOT_CVMFS_REPOSITORIES": "atlas.cern.ch,sft.cern.ch",
                "PILOT_CFG_PILOT_CVMFS_LAST_UPDATE_FILE": "sft.cern.ch/lcg/lastUpdate"}
    settings.update(extra)
    return env_with(**settings)


def run_in(base, jobdir, *extra, env):
    base.mkdir()
    return run_pilot(base, "--job-source", f"local:{jobdir}", *extra, env=env)


def test_cvmfs_fresh_lets_the_job_run_stale_stops_the_pilot_with_64(tmp_path, jobdir):
    """Over 10 s on a loaded machine: four pilot runs (fresh, stale, -b, NO_CVMFS_OK)."""
    root = tmp_path / "cvmfs"
    fake_cvmfs(root, int(time.time()) - 3600)
    write_job(jobdir, job_definition(303))
    run = run_in(tmp_path / "fresh", jobdir, env=cvmfs_env(root))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "CVMFS repository" in run.stderr and run.final(303)["state"] == "finished"

    (root / "sft.cern.ch" / "lcg" / "lastUpdate").write_text(f"x | y | {int(time.time()) - 3 * 86400}\n")
    write_job(jobdir, job_definition(304))
    stale = run_in(tmp_path / "stale", jobdir, env=cvmfs_env(root))
    assert stale.returncode == 64, stale.stderr[-3000:]
    assert "CVMFS is stale: last update 72.0 h ago" in stale.stderr
    assert not list((tmp_path / "stale").glob("PanDA_Pilot3_*/PanDA_Pilot-304")), "no job may start"
    # -b (Pilot 3's --nocvmfs) and NO_CVMFS_OK skip the check
    skipped = run_in(tmp_path / "nocvmfs", jobdir, "-b", env=cvmfs_env(root))
    assert skipped.returncode == 0 and skipped.final(304)["state"] == "finished", skipped.stderr[-3000:]
    write_job(jobdir, job_definition(305))
    skipped = run_in(tmp_path / "ok", jobdir, env=cvmfs_env(root, NO_CVMFS_OK="1"))
    assert skipped.returncode == 0 and skipped.final(305)["state"] == "finished", skipped.stderr[-3000:]


def test_missing_cvmfs_repository_is_1377(tmp_path, jobdir):
    root = tmp_path / "cvmfs"
    (root / "atlas.cern.ch").mkdir(parents=True)  # sft.cern.ch absent, atlas.cern.ch not mounted (empty)
    write_job(jobdir, job_definition(306))
    run = run_pilot(tmp_path, "--job-source", f"local:{jobdir}",
                    env=cvmfs_env(root, PILOT_CFG_PILOT_CVMFS_LAST_UPDATE_FILE=""))
    assert run.returncode == 64, run.stderr[-3000:]
    assert "atlas.cern.ch is empty (not mounted)" in run.stderr

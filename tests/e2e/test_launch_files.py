"""Launch-dir files through pilot.py: queuedata.json, pandaJobData.out, and what Harvester is told on every exit.

Harvester-side files follow the SharedFileMessenger contract (spec launchers.md §2.3): the access point holds
worker_attributes.json, kill_worker.json, worker_heartbeat.json; the pilot runs with -z --harvester-workdir AP
and HARVESTER_WORKER_ID set, as Harvester's submitters start it.
"""

import json
import os
import subprocess
import sys
import time

from tests.e2e.pilotrun import PILOT, PilotRun, job_definition

QUEUE = {"nickname": "SITE_Q", "state": "ACTIVE", "status": "online", "timefloor": 0, "maxtime": 3600,
         "copytools": {"mv": {"setup": ""}}, "acopytools": {"pl": ["mv"], "default": ["mv"]}}
NO_REMOTE = {"PILOT_CFG_INFORMATION_QUEUEDATA_URL": "", "PILOT_CFG_INFORMATION_QUEUES_URL": ""}


def _env(**extra):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("HARVESTER_", "QUEUEDATA_SERVER_URL", "PILOT_CFG_"))}
    env.update(extra)
    return env


def _run(cwd, *args, env=None, timeout=60):
    proc = subprocess.run([sys.executable, PILOT, *args], cwd=str(cwd), capture_output=True, text=True,
                          env=env or _env(), timeout=timeout, stdin=subprocess.DEVNULL)
    return PilotRun(str(cwd), proc, proc.stdout, proc.stderr)


def test_launch_dir_queuedata_wins_over_queuedata_url(tmp_path):
    """Pilot 3 reads queuedata.json in the launch dir first; --queuedata-url is only the next source."""
    (tmp_path / "queuedata.json").write_text(json.dumps({"SITE_Q": QUEUE}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps(dict(QUEUE, nickname="SITE_Q", state="OFFLINE")))  # would be refused: 1359
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "1.json").write_text(json.dumps(job_definition(501)))
    run = _run(tmp_path, "-q", "SITE_Q", "-a", str(tmp_path), "--job-source", f"local:{jobs}",
               "--queuedata-url", str(other),
               env=_env(**NO_REMOTE))
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"from {tmp_path / 'queuedata.json'}" in run.stderr
    assert run.final(501)["state"] == "finished"


def test_no_queue_data_source_is_1116_not_a_hardcoded_server(tmp_path):
    started = time.monotonic()
    run = _run(tmp_path, "-q", "SITE_Q", "--job-source", "local", env=_env(**NO_REMOTE))
    assert run.returncode == 71, run.stderr[-2000:]  # 1116 QUEUEDATA
    assert "no queue data source for queue SITE_Q" in run.stderr
    assert time.monotonic() - started < 10


def test_pandajobdata_in_launch_dir_is_the_first_job_in_local_mode(tmp_path):
    """Outside Harvester mode too: the job in pandaJobData.out runs, the file is taken, the rest come after."""
    (tmp_path / "pandaJobData.out").write_text(json.dumps({"601": job_definition(601, pars="-c 'echo preplaced'")}))
    run = _run(tmp_path, "-q", "LOCAL", "-a", str(tmp_path), "-v", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    final = run.final(601)
    assert final["state"] == "finished"
    assert not (tmp_path / "pandaJobData.out").exists()
    assert json.loads(open(os.path.join(run.main, "job_definition.json")).read())["601"]["PandaID"] == "601"
    assert len(run.reports(601)) >= 1 and not run.reports(1)  # the built-in job was not asked for


def _harvester(tmp_path, *args, env=None, timeout=60):
    ap = tmp_path / "ap"
    ap.mkdir(exist_ok=True)
    env = _env(HARVESTER_ID="h1", HARVESTER_WORKER_ID="42", **(env or {}))
    run = _run(ap, "-z", "--harvester-workdir", str(ap), "--harvester-submit-mode", "PUSH", *args, env=env,
               timeout=timeout)
    return ap, run


def _exit_report(ap):
    attributes = json.loads((ap / "worker_attributes.json").read_text())
    kill = json.loads((ap / "kill_worker.json").read_text())
    assert (ap / "kill_worker").exists()
    return attributes, kill


def test_harvester_told_about_bad_flags(tmp_path):
    ap, run = _harvester(tmp_path, "-q", "LOCAL", "--no-such-flag")
    assert run.returncode == 2
    attributes, kill = _exit_report(ap)
    assert attributes["jobStatus"] == "failed" and attributes["pilotExitCode"] == 2
    assert attributes["pilotErrorCode"] == 1008 and "bad command line" in attributes["pilotErrorDiag"]
    assert kill["pilotExitCode"] == 2


def test_harvester_told_about_refused_flags(tmp_path):
    ap, run = _harvester(tmp_path, "-q", "LOCAL", "--pilot-user", "nosuchexperiment")
    assert run.returncode == 2
    attributes, _ = _exit_report(ap)
    assert "no such experiment plug-in" in attributes["pilotErrorDiag"]


def test_harvester_told_about_missing_queue_data(tmp_path):
    ap, run = _harvester(tmp_path, "-q", "SITE_Q", env=NO_REMOTE)
    assert run.returncode == 71, run.stderr[-2000:]
    attributes, kill = _exit_report(ap)
    assert attributes["jobStatus"] == "failed" and attributes["pilotErrorCode"] == 1116
    assert attributes["pilotExitCode"] == 71 and "no queue data source" in attributes["pilotErrorDiag"]
    assert kill["pilotErrorCode"] == 1116


def test_harvester_told_about_a_bad_config(tmp_path):
    """A broken installation or configuration (here an override of an unknown key) is reported too."""
    ap, run = _harvester(tmp_path, "-q", "LOCAL", env={"PILOT_CFG_PILOT_NO_SUCH_KEY": "1"})
    assert run.returncode != 0
    attributes, _ = _exit_report(ap)
    assert attributes["pilotErrorCode"] == 1008 and "unknown config key" in attributes["pilotErrorDiag"]


def test_harvester_finished_job_keeps_its_state_and_gets_the_exit_code(tmp_path):
    ap = tmp_path / "ap"
    ap.mkdir()
    (ap / "HPCJobs.json").write_text(json.dumps({"701": job_definition(701, pars="-c 'sleep 3'")}))
    ap, run = _harvester(tmp_path, "-q", "LOCAL", env={"PILOT_CFG_HARVESTER_HEARTBEAT_PERIOD": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    attributes, kill = _exit_report(ap)
    assert attributes["jobStatus"] == "finished" and attributes["jobId"] == "701"
    assert attributes["pilotExitCode"] == 0 and attributes["pilotErrorCode"] == 0 and kill["pilotExitCode"] == 0
    beats = json.loads((ap / "worker_heartbeat.json").read_text())
    assert beats["pid"] > 0


def test_worker_heartbeat_refreshed_at_its_period_while_the_payload_runs(tmp_path):
    """A 4 s payload, a 1 s period: the heartbeat file is rewritten several times while no update is sent."""
    ap = tmp_path / "ap"
    ap.mkdir()
    (ap / "HPCJobs.json").write_text(json.dumps({"702": job_definition(702, pars="-c 'sleep 4'")}))
    env = _env(HARVESTER_ID="h1", HARVESTER_WORKER_ID="42", PILOT_CFG_HARVESTER_HEARTBEAT_PERIOD="1")
    proc = subprocess.Popen([sys.executable, PILOT, "-q", "LOCAL", "-z", "--harvester-workdir", str(ap),
                             "--harvester-submit-mode", "PUSH"], cwd=str(ap), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    seen = set()
    while proc.poll() is None:
        try:
            seen.add(json.loads((ap / "worker_heartbeat.json").read_text())["time"])
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    assert proc.returncode == 0, proc.stderr.read()[-2000:]
    assert len(seen) >= 3, seen


def test_example_experiment_plugin_through_pilot(tmp_path):
    """--pilot-user example: its environment, setup line, pre/post-process and coprocess all act on a real job."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    pars = "-c 'echo $EXAMPLE_EXPERIMENT $EXAMPLE_EXPERIMENT_SETUP > seen.txt; sleep 1'"
    (jobs / "1.json").write_text(json.dumps(job_definition(801, pars=pars)))
    run = _run(tmp_path, "-q", "LOCAL", "-a", str(tmp_path), "--job-source", f"local:{jobs}", "--pilot-user",
               "example", "--cleanup", "false")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "experiment plug-in: example" in run.stderr and run.final(801)["state"] == "finished"
    workdir = [os.path.join(run.main, name) for name in os.listdir(run.main) if name.endswith("801")][0]
    assert open(os.path.join(workdir, "seen.txt")).read().split() == ["example", "1"]
    for name in ("example_preprocess.txt", "example_postprocess.txt", "example_coprocess.txt"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name


def test_redirect_stdout_takes_the_pilots_standard_output(tmp_path):
    run = _run(tmp_path, "--check", "-q", "LOCAL", "--redirect-stdout", str(tmp_path / "out.txt"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout == "" and "node can run jobs of queue LOCAL" in (tmp_path / "out.txt").read_text()


def test_sigterm_in_a_kubernetes_pod_is_preemption_1379(tmp_path):
    """--pod: Pilot 3 reports a SIGTERM on Kubernetes as 1379 PREEMPTION (the exit code stays 143)."""
    import signal

    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "1.json").write_text(json.dumps(job_definition(901, pars="-c 'sleep 30'")))
    proc = subprocess.Popen([sys.executable, PILOT, "-q", "LOCAL", "-a", str(tmp_path), "--job-source",
                             f"local:{jobs}", "--pod"], cwd=str(tmp_path), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline and not list(tmp_path.glob("PanDA_Pilot3_*/reports/901/*running*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    run = PilotRun(str(tmp_path), proc, out, err)
    assert run.returncode == 143, err[-3000:]
    assert run.final(901)["pilotErrorCode"] == 1379

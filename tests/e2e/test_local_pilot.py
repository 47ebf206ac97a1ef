"""End-to-end: ./pilot.py runs jobs from the local channel, as issue 2's acceptance asks."""

import json
import os
import signal
import subprocess
import tarfile
import time


from tests.e2e.pilotrun import (PilotRun, adler32_of, alive_pids, job_definition, pilot_cmd, run_pilot, write_input,
                                write_job)


def test_builtin_job_end_to_end(tmp_path):
    run = run_pilot(tmp_path, "--job-source", "local")
    assert run.returncode == 0, run.stderr[-3000:]
    panda_id = "4242000001"
    states = [data["state"] for _name, data in run.reports(panda_id)]
    assert states == ["starting", "running", "finished"]
    final = run.final(panda_id)
    assert final["pilotErrorCode"] == 0 and final["transExitCode"] == 0
    info = json.loads(final["xml"])
    storage = os.path.join(run.main, "storage")
    out_name, log_name = f"fake.{panda_id}.output.txt", f"fake.{panda_id}.job.log.tgz"
    assert set(info) == {out_name, log_name}
    for lfn, entry in info.items():
        path = os.path.join(storage, lfn)
        assert entry["surl"] == path
        assert entry["fsize"] == os.path.getsize(path)
        assert entry["adler32"] == adler32_of(path)
        assert entry["guid"]
    # the payload really read the staged-in input and wrote the output
    with open(os.path.join(storage, out_name)) as handle:
        lines = handle.read().splitlines()
    assert len(lines) == 1001 and lines[0].startswith("EVENT 0001 OF FAKE JOB")
    # the log tarball holds the payload's stdout and the pilot log, not the staged-out output
    with tarfile.open(os.path.join(storage, log_name)) as tar:
        names = tar.getnames()
        stdout = tar.extractfile(next(n for n in names if n.endswith("/payload.stdout"))).read().decode()
    assert "processed 1000 events" in stdout
    assert any(n.endswith("/pilotlog.txt") for n in names)
    assert not any(n.endswith(out_name) for n in names)
    # job work dir cleaned up, timing written, summary printed
    assert not os.path.exists(os.path.join(run.main, f"PanDA_Pilot-{panda_id}"))
    timing = json.load(open(os.path.join(run.main, "pilot_timing.json")))
    assert set(timing[panda_id]) >= {"getjob", "stagein", "payload", "stageout"}
    assert "final report" in run.stderr and log_name in run.stderr


def test_payload_exit_code_3_fails_job_with_1305(tmp_path, jobdir):
    write_job(jobdir, job_definition(101, pars="-c 'echo doing work; echo bad thing >&2; exit 3'"))
    run = run_pilot(tmp_path, "--job-source", f"local:{jobdir}")
    assert run.returncode == 0, run.stderr[-3000:]
    final = run.final(101)
    assert final["state"] == "failed"
    assert final["pilotErrorCode"] == 1305
    assert final["transExitCode"] == 3
    assert "bad thing" in final["pilotErrorDiag"]
    assert "101.job.log.tgz" in json.loads(final["xml"])  # the log still went out


def test_missing_input_fails_stagein_and_still_ships_log(tmp_path, jobdir, storage):
    job = job_definition(102, inputs=[("absent.dat", (10, "00000001"))], outputs=["out.dat"])
    write_job(jobdir, job)
    run = run_pilot(tmp_path, "--job-source", f"local:{jobdir}", "--input-dir", str(storage),
                    "--output-dir", str(storage))
    assert run.returncode == 0, run.stderr[-3000:]
    final = run.final(102)
    assert final["state"] == "failed"
    assert final["pilotErrorCode"] == 1331
    assert "absent.dat" in final["pilotErrorDiag"]
    assert "transExitCode" not in final  # the payload never ran
    info = json.loads(final["xml"])
    assert list(info) == ["102.job.log.tgz"]
    assert adler32_of(os.path.join(storage, "102.job.log.tgz")) == info["102.job.log.tgz"]["adler32"]
    assert not os.path.exists(os.path.join(storage, "out.dat"))


def test_corrupted_input_is_detected(tmp_path, jobdir, storage):
    size, _checksum = write_input(storage, "in.dat", b"some input data\n" * 100)
    write_job(jobdir, job_definition(103, inputs=[("in.dat", (size, "deadbeef"))]))
    run = run_pilot(tmp_path, "--job-source", f"local:{jobdir}", "--input-dir", str(storage),
                    "--output-dir", str(storage))
    final = run.final(103)
    assert final["pilotErrorCode"] == 1171 and "deadbeef" in final["pilotErrorDiag"]


def test_sigterm_during_payload(tmp_path, jobdir):
    marker = tmp_path / "pids"
    # the payload starts a child and a daemon in its own session (setsid), then waits
    payload = tmp_path / "payload.sh"
    payload.write_text("#!/bin/bash\n"
                       f"sleep 300 & echo $! >> {marker}\n"
                       f"setsid sh -c 'sleep 301 & echo $! >> {marker}; wait' &\n"
                       f"echo $$ >> {marker}\n"
                       "wait\n")
    payload.chmod(0o755)
    write_job(jobdir, job_definition(104, trf=str(payload), pars=""))
    proc = subprocess.Popen(pilot_cmd(tmp_path, "--job-source", f"local:{jobdir}"), cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline and (not marker.exists() or len(marker.read_text().split()) < 3):
        time.sleep(0.05)
    pids = [int(p) for p in marker.read_text().split()]
    assert len(pids) == 3 and len(alive_pids(pids)) == 3
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    elapsed = time.time() - sent
    run = PilotRun(str(tmp_path), proc, out, err)
    assert run.returncode == 143, err[-3000:]
    final = run.final(104)
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1201
    assert "SIGTERM" in final["pilotErrorDiag"]
    assert "104.job.log.tgz" in json.loads(final["xml"])
    assert alive_pids(pids) == [], "payload processes survived the pilot"
    assert elapsed < 30


def test_two_jobs_with_time_floor(tmp_path, jobdir):
    queuedata = tmp_path / "queuedata.json"
    queuedata.write_text(json.dumps({"TEST_MULTI": {
        "nickname": "TEST_MULTI", "state": "ACTIVE", "status": "online", "timefloor": 5, "maxtime": 3600,
        "copytools": {"mv": {"setup": ""}}, "acopytools": {"pl": ["mv"], "default": ["mv"]}}}))
    for panda_id in (201, 202):
        write_job(jobdir, job_definition(panda_id, pars=f"-c 'echo job {panda_id}'"))
    cmd = pilot_cmd(tmp_path, "--job-source", f"local:{jobdir}", "--queuedata-url", str(queuedata), "-v", "5")
    cmd[cmd.index("LOCAL")] = "TEST_MULTI"
    proc = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
    run = PilotRun(str(tmp_path), proc, proc.stdout, proc.stderr)
    assert run.returncode == 0, run.stderr[-3000:]
    for panda_id in (201, 202):
        final = run.final(panda_id)
        assert final["state"] == "finished" and final["siteName"] == "TEST_MULTI"
    assert "no job available" in run.stderr  # it stopped because the directory ran dry, within the floor
    taken = sorted(name for name in os.listdir(jobdir) if name != ".claimed")
    assert [name.split(".taken.")[0] for name in taken] == ["job_201.json", "job_202.json"]


def test_single_job_without_time_floor(tmp_path, jobdir):
    for panda_id in (301, 302):
        write_job(jobdir, job_definition(panda_id))
    run = run_pilot(tmp_path, "--job-source", f"local:{jobdir}")
    assert run.returncode == 0
    assert run.final(301)["state"] == "finished"
    assert not os.path.exists(os.path.join(run.main, "reports", "302"))
    assert os.path.exists(os.path.join(jobdir, "job_302.json"))  # left for another pilot


def test_hostile_job_definition_is_reported_not_executed(tmp_path, jobdir):
    canary = tmp_path / "canary"
    job = job_definition(401, pars=f"-c 'touch {canary}'", outputs=["../../escape.txt"])
    write_job(jobdir, job)
    run = run_pilot(tmp_path, "--job-source", f"local:{jobdir}")
    assert run.returncode == 0
    final = run.final(401)
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1371
    assert "escape.txt" in final["pilotErrorDiag"]
    assert not canary.exists(), "a job with a hostile definition must not run"
    assert "Traceback" not in run.stderr


def test_unimplemented_option_gives_clear_message(tmp_path):
    run = run_pilot(tmp_path, "--subscribe-to-msgsvc")
    assert run.returncode == 2
    assert "message-service subscription is not implemented" in run.stderr
    run = run_pilot(tmp_path, "-w", "eventservice_hpc")
    assert run.returncode == 2 and "workflow 'eventservice_hpc' is not implemented" in run.stderr


def test_missing_queuedata_file_exits_71(tmp_path):
    proc = subprocess.run(pilot_cmd(tmp_path, "--queuedata-url", str(tmp_path / "nope.json")), cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 71
    assert "1116" in proc.stderr and "Traceback" not in proc.stderr


def test_underscore_spellings_are_accepted(tmp_path):
    run = run_pilot(tmp_path, "--pilot_user", "generic", "--job_source", "local")
    assert run.returncode == 0, run.stderr[-2000:]


def test_nothing_is_lost_by_leaving_without_interpreter_teardown(tmp_path, monkeypatch):
    """pilot.py ends with os._exit after flushing: the last log line reaches stderr and pilotlog.txt, and a
    large standard output written just before the exit (--help into a pipe) arrives whole."""
    run = run_pilot(tmp_path, "--job-source", "local")
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert "pilot done: 1 job(s), exit code 0" in last
    assert run.pilotlog().strip().splitlines()[-1].endswith(last.split(" | ")[-1])
    monkeypatch.setenv("COLUMNS", "150")  # the same help layout in the pilot and here
    from pilot.options import build_parser

    shown = subprocess.run(pilot_cmd(tmp_path, "--help"), capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and shown.stdout == build_parser().format_help()
    bad = subprocess.run(pilot_cmd(tmp_path, "--no-such-flag"), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unrecognized arguments: --no-such-flag" in bad.stderr
    # started with its standard output closed (Python's sys.stdout is then None), or into a pipe nobody reads
    closed = subprocess.run(["/bin/sh", "-c", '"$@" >&-', "sh", *pilot_cmd(tmp_path, "--version")],
                            capture_output=True, text=True, timeout=60)
    assert closed.returncode == 0 and "Traceback" not in closed.stderr, closed.stderr
    gone = subprocess.run(["/bin/sh", "-c", '"$@" | true', "sh", *pilot_cmd(tmp_path, "--help")],
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 0 and "Traceback" not in gone.stderr, gone.stderr

"""End-to-end: the monitor's checks kill a misbehaving payload with the right code, and only its processes."""

import glob
import json
import os
import subprocess
import sys
import time

import psutil

from tests.e2e.pilotrun import PilotRun, job_definition, pilot_cmd, write_job

FAST = {"PILOT_CFG_PILOT_MEMORY_USAGE_VERIFICATION_TIME": "1", "PILOT_CFG_PILOT_DISK_SPACE_VERIFICATION_TIME": "1",
        "PILOT_CFG_PILOT_LOOPING_VERIFICATION_TIME": "1", "PILOT_CFG_PILOT_KILL_INSTRUCTION_TIME": "1",
        "PILOT_CFG_PILOT_OUTPUT_VERIFICATION_TIME": "1", "PILOT_CFG_PILOT_KILL_GRACE": "2"}


def queue_file(tmp_path, **fields):
    data = {"nickname": "MON", "state": "ACTIVE", "status": "online", "copytools": {"mv": {}},
            "acopytools": {"default": ["mv"]}, "maxwdir": 10000}
    data.update(fields)
    path = tmp_path / "queue.json"
    path.write_text(json.dumps(data))
    return str(path)


def run(tmp_path, jobdir, env_extra=None, queue=None, timeout=90, during=None):
    cmd = pilot_cmd(tmp_path, "--job-source", f"local:{jobdir}")
    if queue:
        cmd[cmd.index("LOCAL")] = "MON"
        cmd += ["--queuedata-url", queue]
    env = dict(os.environ, **FAST, **(env_extra or {}))
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    if during:
        during(tmp_path)
    out, err = proc.communicate(timeout=timeout)
    return PilotRun(str(tmp_path), proc, out, err)


def test_memory_hog_killed_with_1235(tmp_path, jobdir):
    hog = tmp_path / "hog.py"
    hog.write_text("import time\nblock = b'x' * (400 << 20)\ntime.sleep(120)\n")
    write_job(jobdir, job_definition(501, trf=sys.executable, pars=str(hog)))
    started = time.time()
    result = run(tmp_path, jobdir, queue=queue_file(tmp_path, maxrss=100))
    final = result.final(501)
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1235, result.stderr[-2000:]
    assert "exceeds the memory limit of 200 MB" in final["pilotErrorDiag"]
    assert final["maxPSS"] > 200 * 1024 and final["maxRSS"] > 200 * 1024
    assert time.time() - started < 30


def test_looping_job_killed_with_1150(tmp_path, jobdir):
    write_job(jobdir, job_definition(502, pars="-c 'sleep 120'"))
    result = run(tmp_path, jobdir, {"PILOT_CFG_PILOT_LOOPING_LIMIT_DEFAULT": "2",
                                    "PILOT_CFG_PILOT_LOOPING_LIMIT_MIN_DEFAULT": "2"})
    final = result.final(502)
    assert final["pilotErrorCode"] == 1150 and "looping" in final["pilotErrorDiag"], result.stderr[-2000:]


def test_busy_job_is_not_looping(tmp_path, jobdir):
    write_job(jobdir, job_definition(503, pars="-c 'for i in 1 2 3 4 5 6; do date > progress; sleep 1; done'"))
    result = run(tmp_path, jobdir, {"PILOT_CFG_PILOT_LOOPING_LIMIT_DEFAULT": "3",
                                    "PILOT_CFG_PILOT_LOOPING_LIMIT_MIN_DEFAULT": "3"})
    assert result.final(503)["state"] == "finished", result.stderr[-2000:]


def test_oversized_stdout_killed_with_1106(tmp_path, jobdir):
    write_job(jobdir, job_definition(504, pars="-c 'head -c 2000000 /dev/zero; sleep 120'"))
    result = run(tmp_path, jobdir, {"PILOT_CFG_PILOT_LOCAL_SIZE_LIMIT_STDOUT_KB": "1000"})
    final = result.final(504)
    assert final["pilotErrorCode"] == 1106 and "payload.stdout" in final["pilotErrorDiag"], result.stderr[-2000:]


def test_kill_instruction_file_gives_1363(tmp_path, jobdir):
    write_job(jobdir, job_definition(505, pars="-c 'sleep 120'"))

    def drop_kill_file(base):
        deadline = time.time() + 20
        while time.time() < deadline:
            work = glob.glob(os.path.join(str(base), "PanDA_Pilot3_*", "PanDA_Pilot-505", "payload.stdout"))
            if work:
                main = os.path.dirname(os.path.dirname(work[0]))
                open(os.path.join(main, "pilot_kill_payload"), "w").close()
                return
            time.sleep(0.05)

    result = run(tmp_path, jobdir, during=drop_kill_file)
    assert result.final(505)["pilotErrorCode"] == 1363, result.stderr[-2000:]


def test_walltime_gives_1213(tmp_path, jobdir):
    write_job(jobdir, job_definition(506, pars="-c 'sleep 120'", maxWalltime="2"))
    result = run(tmp_path, jobdir, queue=queue_file(tmp_path, params={"job_maxwalltime": True}))
    final = result.final(506)
    assert final["pilotErrorCode"] == 1213 and "maxWalltime" in final["pilotErrorDiag"], result.stderr[-2000:]


def test_daemon_of_payload_is_gone_and_unrelated_process_untouched(tmp_path, jobdir):
    marker = tmp_path / "daemon.pid"
    # an unrelated process of the same user, re-parented to init (double fork), started before the pilot
    outsider = subprocess.Popen(["sh", "-c", "sleep 300 & echo $!"], stdout=subprocess.PIPE, text=True,
                                start_new_session=True)
    outsider_pid = int(outsider.stdout.readline())
    outsider.wait()
    try:
        # the payload double-forks a daemon into its own session and exits at once
        write_job(jobdir, job_definition(507, pars=f"-c '(setsid sleep 299 & echo $! > {marker}) ; exit 0'"))
        result = run(tmp_path, jobdir)
        assert result.final(507)["state"] == "finished", result.stderr[-2000:]
        daemon = int(marker.read_text())
        assert not psutil.pid_exists(daemon) or psutil.Process(daemon).status() == psutil.STATUS_ZOMBIE
        assert "left behind" in result.stderr
        assert psutil.Process(outsider_pid).is_running(), "the pilot killed a process that was not its own"
    finally:
        psutil.Process(outsider_pid).kill()


def test_memory_monitor_files_in_log(tmp_path, jobdir):
    import tarfile

    write_job(jobdir, job_definition(508, pars="-c 'sleep 3'"))
    result = run(tmp_path, jobdir)
    final = result.final(508)
    assert final["state"] == "finished" and final["maxRSS"] > 0 and "maxProcs=" in final["jobMetrics"]
    with tarfile.open(os.path.join(result.main, "storage", "508.job.log.tgz")) as tar:
        names = {os.path.basename(name): name for name in tar.getnames()}
        summary = json.load(tar.extractfile(names["memory_monitor_summary.json"]))
        text = tar.extractfile(names["memory_monitor_output.txt"]).read().decode().splitlines()
    assert set(summary) == {"Max", "Avg"} and summary["Max"]["rss"] > 0
    assert text[0].split("\t")[:4] == ["Time", "nprocs", "nthreads", "pss"] and len(text) >= 3


def test_expired_proxy_stops_pilot_before_any_job(tmp_path, jobdir):
    from tests.unit.test_proxy import make_cert

    write_job(jobdir, job_definition(509))
    proxy = make_cert(tmp_path / "x509up", -60)
    result = run(tmp_path, jobdir, {"X509_USER_PROXY": proxy})
    assert result.returncode == 68, result.stderr[-2000:]  # Pilot 3's shell code for proxy problems
    assert "1373" in result.stderr and "expired" in result.stderr
    assert os.path.exists(os.path.join(str(jobdir), "job_509.json")), "no job may be taken"


def test_short_proxy_exits_80_and_proxy_expiring_during_job_gives_1370(tmp_path, jobdir):
    from tests.unit.test_proxy import make_cert

    proxy = make_cert(tmp_path / "x509up", 1200)
    short = run(tmp_path, jobdir, {"X509_USER_PROXY": proxy})
    assert short.returncode == 80 and "1382" in short.stderr
    write_job(jobdir, job_definition(510, pars="-c 'sleep 120'"))
    second = tmp_path / "second"
    second.mkdir()
    result = run(second, jobdir, {"X509_USER_PROXY": proxy, "PILOT_CFG_PILOT_PROXY_MIN_LIFETIME_START": "60",
                                    "PILOT_CFG_PILOT_PROXY_MIN_LIFETIME_RUNNING": "1800",
                                    "PILOT_CFG_PILOT_PROXY_VERIFICATION_TIME": "1"})
    final = result.final(510)
    assert final["pilotErrorCode"] == 1370 and "proxy" in final["pilotErrorDiag"], result.stderr[-2000:]


def test_disk_full_gives_1098_and_still_a_final_report(tmp_path, jobdir):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(small)], check=True)
    try:
        outdir = tmp_path / "out"
        write_job(jobdir, job_definition(511, pars="-c 'head -c 16000000 /dev/zero > big.dat; sleep 120'"))
        cmd = pilot_cmd(small, "--job-source", f"local:{jobdir}", "--output-dir", str(outdir))
        env = dict(os.environ, **FAST, PILOT_CFG_PILOT_FREE_SPACE_LIMIT_RUNNING_MB="10")
        proc = subprocess.run(cmd, cwd=str(small), env=env, capture_output=True, text=True, timeout=90)
        result = PilotRun(str(small), proc, proc.stdout, proc.stderr)
        final = result.final(511)
        assert final["pilotErrorCode"] == 1098 and "MB free" in final["pilotErrorDiag"], proc.stderr[-2000:]
        assert "511.job.log.tgz" in json.loads(final["xml"])
        assert (outdir / "511.job.log.tgz").exists()
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_pilot_lifetime_gives_1213_and_exit_81(tmp_path, jobdir):
    write_job(jobdir, job_definition(512, pars="-c 'sleep 120'"))
    started = time.time()
    result = run(tmp_path, jobdir, {"PILOT_CFG_PILOT_MIN_JOB_TIME": "1", "PILOT_CFG_PILOT_LIFETIME_MARGIN": "2",
                                    "PANDAPILOT_LIFETIME": "5"})
    assert result.returncode == 81, result.stderr[-2000:]
    final = result.final(512)
    assert final["pilotErrorCode"] == 1213 and "lifetime" in final["pilotErrorDiag"]
    assert time.time() - started < 20

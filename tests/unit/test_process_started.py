"""recovery.process_started: a process's start time read from /proc, the figure psutil's create_time() gives."""

import os
import subprocess
import sys

import psutil

from pilot.recovery import process_started, same_process


def test_start_times_agree_with_psutil():
    child = subprocess.Popen(["sleep", "5"])
    try:
        for pid in (os.getpid(), os.getppid(), 1, child.pid):
            assert abs(process_started(pid) - psutil.Process(pid).create_time()) < 0.01, pid
        assert same_process(child.pid, psutil.Process(child.pid).create_time())
        assert not same_process(child.pid, psutil.Process(child.pid).create_time() - 10)
    finally:
        child.kill()
        child.wait()


def test_a_gone_or_odd_process_starts_at_zero(tmp_path):
    assert process_started(2 ** 22 + 12345) == 0.0
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "stat").write_bytes(b"77 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 500 20")
    (tmp_path / "stat").write_bytes(b"cpu  1 2 3\nbtime 1000\n")
    ticks = os.sysconf("SC_CLK_TCK")
    assert process_started(77, str(tmp_path)) == 1000 + 500 / ticks  # comm "a) b) c" holds spaces and parens
    (tmp_path / "stat").write_bytes(b"cpu  1 2 3\n")
    assert process_started(77, str(tmp_path)) == 0.0


def test_claiming_a_job_does_not_import_psutil(tmp_path):
    """psutil costs ~15 ms to import: the pilot loads it after its payload has started, not to claim a job."""
    code = ("import sys; from pilot import recovery; "
            f"recovery.record_claim({str(tmp_path)!r}, 'job.json.taken.1', '/main');"
            "print('psutil' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.stdout.strip() == "False"
    assert (tmp_path / "job.json.taken.1.owner").exists()

"""Storage faults a local site can have: a read-only output area. (Remote storage faults -- server down, hung
transfers, corrupted and missing replicas -- are in tests/integration/test_copytools.py; disk full in
tests/e2e/test_monitoring.py.)"""

import json
import subprocess
import sys

import pytest

from tests.e2e.pilotrun import PILOT, PilotRun, job_definition, write_job
from pilot.settings import Settings


def test_read_only_output_dir_fails_stageout_with_a_code(tmp_path):
    jobs, readonly = tmp_path / "jobs", tmp_path / "readonly"
    jobs.mkdir()
    readonly.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)], check=True)
    try:
        write_job(jobs, job_definition(1801, pars="-c 'echo result > out.dat'", outputs=["out.dat"]))
        proc = subprocess.run([sys.executable, PILOT, "-q", "LOCAL", "-a", str(tmp_path / "run"), "--job-source",
                               f"local:{jobs}", "--output-dir", str(readonly)], capture_output=True, text=True,
                              timeout=60)
    finally:
        subprocess.run(["umount", "-l", str(readonly)], check=False)
    run = PilotRun(str(tmp_path / "run"), proc, proc.stdout, proc.stderr)
    final = run.final(1801)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1137, final
    assert "Read-only file system" in final["pilotErrorDiag"]
    assert json.loads(final["xml"]) == {}  # nothing claimed as stored


@pytest.mark.parametrize("tool", ["xrdcp", "gfal"])
def test_a_silent_xrootd_server_costs_the_time_limit_not_more(tmp_path, tool):
    """A server that accepts connections and never answers (the libraries' own timeouts do not get out of that):
    the batch (a child using the bindings) and then each file alone (the command) are killed at the time limit,
    every input fails 1151, and nothing half-written is left."""
    import socket
    import threading
    import time
    import types

    from pilot.config import load_config
    from pilot.job import FileSpec
    from pilot.queuedata import from_dict
    from pilot.transfer import batch
    from pilot.transfer.base import get_copytool
    from pilot.trigger import Trigger

    assert batch.bindings("xrootd" if tool == "xrdcp" else tool), "install-deps links Debian's bindings into the venv"
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])  # keep it open, say nothing
            except socket.timeout:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = silent.getsockname()[1]
    env = {"PILOT_CFG_FILE_TRANSFER_TIMEOUT_BASE": "2", "PILOT_CFG_FILE_TRANSFER_TIMEOUT_MAX": "2"}
    ctx = types.SimpleNamespace(config=load_config(env=env), abort=Trigger(), storage={},
                                queuedata=from_dict({"nickname": "Q"}, "Q"), settings=Settings(queue="Q", capath=None))
    inputs = [FileSpec(lfn=f"s{i}.dat", role="input", scope="mc", filesize=10,
                       turl=f"root://127.0.0.1:{port}//data/s{i}.dat") for i in range(3)]
    started = time.monotonic()
    try:
        get_copytool(tool).copy_in(inputs, str(tmp_path), ctx)
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        silent.close()
    took = time.monotonic() - started
    assert [spec.status_code for spec in inputs] == [1151, 1151, 1151], [spec.diag for spec in inputs]
    assert took < 20, f"{took:.1f} s for a 2 s limit"
    assert list(tmp_path.iterdir()) == []

"""Hostile job definitions through a real pilot: each is rejected with a code and a diagnostic, nothing runs,
nothing is written outside the pilot's directories, no traceback."""

import json
import os
import subprocess
import sys

import pytest

from tests.e2e.pilotrun import PILOT, PilotRun, job_definition

CASES = [
    ("traversal in an output", {"outFiles": "../../escape.txt", "scopeOut": "x"}, 1371),
    ("absolute output", {"outFiles": "/etc/passwd", "scopeOut": "x"}, 1371),
    ("traversal in the log name", {"logFile": "../../escape.tgz", "outFiles": "../../escape.tgz"}, 1371),
    ("shell in an input", {"inFiles": "$(touch CANARY)", "fsize": "1", "checksum": "ad:00000001"}, 1371),
    ("backticks in a scope", {"inFiles": "a.dat", "scopeIn": "`touch CANARY`", "fsize": "1"}, 1371),
    ("newline in an output", {"outFiles": "a\nb", "scopeOut": "x"}, 1371),
    ("256-character LFN", {"outFiles": "x" * 256, "scopeOut": "x"}, 1190),
    ("mismatched lists", {"inFiles": "a,b", "fsize": "1", "checksum": "ad:1,ad:2"}, 1312),
    ("wrong type", {"jobPars": {"not": "a string"}}, 1302),
    ("huge field", {"jobPars": "y" * 2_000_000}, 1302),
    ("duplicate outputs", {"outFiles": "o.dat,o.dat,1501.job.log.tgz", "scopeOut": "x,x", "realDatasets": "d,d,d",
                           "ddmEndPointOut": "E,E,E", "destinationDblock": "d,d,d"}, 1008),
    ("no transformation", {"transformation": None}, 1008),
]


@pytest.mark.parametrize("name,extra,code", CASES, ids=[c[0] for c in CASES])
def test_hostile_definition(tmp_path, name, extra, code):
    base = tmp_path / "site"
    jobs = base / "jobs"
    jobs.mkdir(parents=True)
    job = job_definition(1501, pars="-c 'touch CANARY_RAN'", log=True)
    for key, value in extra.items():
        if value is None:
            job.pop(key, None)
        else:
            job[key] = value
    (jobs / "job.json").write_text(json.dumps(job))
    run_dir = base / "run"
    proc = subprocess.run([sys.executable, PILOT, "-q", "LOCAL", "-a", str(run_dir), "--job-source", f"local:{jobs}",
                           "--cleanup", "False"], capture_output=True, text=True, timeout=120, cwd=str(base))
    run = PilotRun(str(run_dir), proc, proc.stdout, proc.stderr)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    final = run.final(1501)
    assert final["state"] == "failed" and final["pilotErrorCode"] == code, final
    assert final["pilotErrorDiag"] and len(final["pilotErrorDiag"]) <= 256
    everything = [os.path.join(folder, f) for folder, _d, files in os.walk(tmp_path) for f in files]
    assert not [p for p in everything if "CANARY" in os.path.basename(p)], "the payload or a shell ran"
    assert not [p for p in everything if "escape" in os.path.basename(p)], "a file was written outside"


def test_undecodable_and_idless_job_files_are_skipped(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "a.json").write_bytes(b'{"PandaID": "1", "jobPars": "\xff\xfe"}')
    (jobs / "b.json").write_text(json.dumps({"transformation": "sh"}))
    (jobs / "c.json").write_text("[1, 2, 3]")
    proc = subprocess.run([sys.executable, PILOT, "-q", "LOCAL", "-a", str(tmp_path / "run"), "-v", "5",
                           "--job-source", f"local:{jobs}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "not readable UTF-8 JSON" in proc.stderr and "no PandaID" in proc.stderr

"""The log tarball, through pilot.py: bounded in size and time, without inputs and outputs, with a listing."""

import json
import os
import tarfile
import time

import pytest

from tests.e2e.pilotrun import job_definition, run_pilot, write_input, write_job


@pytest.fixture
def dirs(tmp_path):
    jobs, storage = tmp_path / "jobs", tmp_path / "storage"
    jobs.mkdir()
    storage.mkdir()
    return jobs, storage


def tar_names(path):
    with tarfile.open(path) as tar:
        names = {name.split("/", 1)[1]: name for name in tar.getnames() if "/" in name}
        listing = ""
        if "log_tarball_excluded.txt" in names:
            listing = tar.extractfile(names["log_tarball_excluded.txt"]).read().decode()
    return names, listing


def test_sparse_huge_inputs_and_outputs_left_out(tmp_path, dirs):
    """A 20 GB sparse file and a file over log_max_file_mb are listed, not tarred; inputs and outputs are not
    tarred either (they are in storage); the small files are in; all within seconds."""
    jobs, storage = dirs
    size, checksum = write_input(storage, "in.dat", b"input data\n" * 1000)
    script = ("truncate -s 20G holes.dat; head -c 3000000 /dev/urandom > big.dat; mkdir sub; echo hi > sub/small.txt; "
              "cp in.dat out.dat; echo done")
    write_job(jobs, job_definition(1611, pars=f"-c '{script}'", inputs=[("in.dat", (size, checksum))],
                                   outputs=["out.dat"]))
    started = time.monotonic()
    run = run_pilot(tmp_path, "--job-source", f"local:{jobs}", "--input-dir", str(storage), "--output-dir",
                    str(storage), env=dict(os.environ, PILOT_CFG_FILE_LOG_MAX_FILE_MB="2"))
    elapsed = time.monotonic() - started
    assert run.final(1611)["state"] == "finished", run.stderr[-3000:]
    names, listing = tar_names(os.path.join(str(storage), "1611.job.log.tgz"))
    assert {"payload.stdout", "sub/small.txt", "pilotlog.txt", "log_tarball_excluded.txt"} <= set(names)
    assert not {"in.dat", "out.dat", "holes.dat", "big.dat"} & set(names), sorted(names)
    lines = {line.split("\t")[2]: line.split("\t")[:2] for line in listing.splitlines()}
    assert lines["holes.dat"][0] == str(20 << 30) and lines["holes.dat"][1].startswith("sparse")
    assert lines["big.dat"] == ["3000000", "larger than 2 MB"]
    assert elapsed < 20, elapsed


def test_log_tarball_time_limit_cuts_and_lists(tmp_path, dirs):
    """Past [File] log_timeout nothing more is read: the file being tarred is cut (zeros, listed), the
    rest listed as left out; the job still finishes and its log is shipped."""
    jobs, storage = dirs
    script = "head -c 30000000 /dev/urandom > a.dat; head -c 30000000 /dev/urandom > b.dat; echo done"
    write_job(jobs, job_definition(1612, pars=f"-c '{script}'"))
    run = run_pilot(tmp_path, "--job-source", f"local:{jobs}", "--input-dir", str(storage), "--output-dir",
                    str(storage), env=dict(os.environ, PILOT_CFG_FILE_LOG_TIMEOUT="0.2"))
    assert run.final(1612)["state"] == "finished", run.stderr[-3000:]
    names, listing = tar_names(os.path.join(str(storage), "1612.job.log.tgz"))
    assert "payload.stdout" in names
    reasons = {line.split("\t")[2]: line.split("\t")[1] for line in listing.splitlines()}
    assert reasons["b.dat"] == "no time left", listing
    assert reasons["a.dat"].startswith("cut short"), listing
    assert "not in the log tarball: b.dat" in run.stderr

"""The pilot launched for real by Slurm: through the wrapper with sbatch, cancelled with scancel, and as 4 ranks
of srun in HPC mode."""

import glob
import json
import os
import sys
import time

import psutil
import pytest

from tests.e2e.pilotrun import PILOT, REPO, job_definition
from tests.integration.slurm import Slurm

pytestmark = pytest.mark.slow
WRAPPER = os.path.join(REPO, "wrapper", "runpilot.sh")


@pytest.fixture(scope="module")
def slurm():
    cluster = Slurm()
    cluster.up()
    yield cluster
    cluster.down()


def batch_script(tmp_path, body):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n" + body + "\n")
    script.chmod(0o755)
    return script


def finals(base):
    return [json.load(open(p)) for p in glob.glob(os.path.join(str(base), "**", "*.final.json"), recursive=True)]


def test_wrapper_and_pilot_under_sbatch(slurm, tmp_path):
    os.chmod(tmp_path, 0o755)
    script = batch_script(tmp_path, f"export PILOT_PYTHON={sys.executable}\n"
                                    f"exec {WRAPPER} -q LOCAL -a {tmp_path}/run")
    job = slurm.sbatch(script, tmp_path)
    state, code = slurm.wait(job)
    out = open(glob.glob(str(tmp_path / "slurm-*.out"))[0]).read()
    assert state == "COMPLETED" and code == (0, 0), out[-3000:]
    assert "runpilot: pilot exit 0" in out
    assert [f["state"] for f in finals(tmp_path / "run")] == ["finished"]


def test_scancel_gives_143_and_a_reported_job(slurm, tmp_path):
    os.chmod(tmp_path, 0o755)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "j.json").write_text(json.dumps(job_definition(1601, pars="-c 'sleep 300'")))
    script = batch_script(tmp_path, f"export PILOT_PYTHON={sys.executable}\n"
                                    f"exec {WRAPPER} -q LOCAL --job-source local:{jobs} -a {tmp_path}/run")
    job = slurm.sbatch(script, tmp_path)
    deadline = time.time() + 60
    while time.time() < deadline and not glob.glob(str(tmp_path / "run" / "*" / "PanDA_Pilot-1601" / "payload.stdout")):
        time.sleep(0.2)
    slurm.run("scancel", job)
    state, code = slurm.wait(job)
    out = open(glob.glob(str(tmp_path / "slurm-*.out"))[0]).read()
    assert state == "CANCELLED", out[-3000:]
    assert "pilot exit 143" in out and "146" not in out.split("runpilot:")[-1]
    assert code in ((0, 15), (143, 0)), code  # Slurm records the SIGTERM the job died of
    final = finals(tmp_path / "run")
    assert len(final) == 1 and final[0]["pilotErrorCode"] == 1201
    assert "1601.job.log.tgz" in json.loads(final[0]["xml"])  # the log was staged out
    time.sleep(1)
    left = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert left == [], "processes of the cancelled job survived"


def test_hpc_ranks_under_srun(slurm, tmp_path):
    os.chmod(tmp_path, 0o755)
    ap = tmp_path / "ap"
    ap.mkdir()
    ids = [1701, 1702, 1703, 1704]
    for panda_id in ids:
        (ap / str(panda_id)).mkdir()
        job = job_definition(panda_id, pars="-c 'echo $SLURM_PROCID > rank.txt'", outputs=["rank.txt"])
        (ap / str(panda_id) / "HPCJobs.json").write_text(json.dumps({str(panda_id): job}))
    (ap / "worker_pandaids.json").write_text(json.dumps(ids))
    script = batch_script(tmp_path, f"srun -n 4 --overcommit {sys.executable} {PILOT} -q LOCAL -w generic_hpc -z "
                                    f"--harvester-workdir {ap} -a {tmp_path}/scratch")
    job = slurm.run("sbatch", "-n", "4", "--overcommit", "-D", str(tmp_path), "-o", str(tmp_path / "slurm-%j.out"),
                    str(script))
    job_id = job.stdout.split()[-1]
    state, code = slurm.wait(job_id)
    out = open(glob.glob(str(tmp_path / "slurm-*.out"))[0]).read()
    assert state == "COMPLETED", out[-3000:]
    for rank, panda_id in enumerate(ids):
        attributes = json.loads((ap / str(panda_id) / "worker_attributes.json").read_text())
        assert attributes["jobStatus"] == "finished"
        assert (ap / str(panda_id) / "rank.txt").read_text().strip() == str(rank)
        events = json.loads((ap / str(panda_id) / "event_status.dump.json").read_text())[str(panda_id)]
        assert {entry["type"] for entry in events} == {"output", "log"}  # outputs declared for Harvester

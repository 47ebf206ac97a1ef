"""End-to-end: HPC mode, one pilot per rank, no server: each rank runs its own job from the shared file system.

The ranks are started here as the MPI launcher would (rank in the environment); tests/integration runs the same
under a real `srun -n N`.
"""

import json
import os
import subprocess
import sys

from tests.e2e.pilotrun import PILOT, adler32_of, job_definition


def start_rank(ap, scratch, rank, variable="SLURM_PROCID"):
    cmd = [sys.executable, PILOT, "-q", "LOCAL", "-w", "generic_hpc", "-z", "--harvester-workdir", str(ap),
           "-a", str(scratch)]
    env = dict(os.environ, **{variable: str(rank)})
    return subprocess.Popen(cmd, cwd=str(ap), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def test_many_to_one_layout_each_rank_runs_its_job(tmp_path):
    """Three ranks, three jobs from the shared access point, one per rank. Over 10 s on a loaded machine: three
    pilots at once on two cores."""
    ap, scratch = tmp_path / "ap", tmp_path / "scratch"
    ap.mkdir()
    ids = [901, 902, 903]
    for panda_id in ids:
        folder = ap / str(panda_id)
        folder.mkdir()
        job = job_definition(panda_id, pars=f"-c 'echo rank job {panda_id} > out_{panda_id}.txt'",
                             outputs=[f"out_{panda_id}.txt"])
        (folder / "HPCJobs.json").write_text(json.dumps({str(panda_id): job}))
    (ap / "worker_pandaids.json").write_text(json.dumps(ids))
    ranks = [start_rank(ap, scratch, rank, variable) for rank, variable in
             zip(range(3), ("SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK"))]
    for proc in ranks:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
    for panda_id in ids:
        folder = ap / str(panda_id)
        attributes = json.loads((folder / "worker_attributes.json").read_text())
        assert attributes["jobId"] == str(panda_id) and attributes["jobStatus"] == "finished"
        assert (folder / f"out_{panda_id}.txt").read_text() == f"rank job {panda_id}\n"
        events = json.loads((folder / "event_status.dump.json").read_text())[str(panda_id)]
        assert {entry["type"] for entry in events} == {"output", "log"}
        for entry in events:
            assert entry["path"].startswith(str(folder)) and entry["chksum"] == adler32_of(entry["path"])
        assert (folder / "HPCJobs.json").exists()  # shared job files are read, never taken
    # per-rank scratch dirs, none shared
    assert len([d for d in os.listdir(scratch) if d.startswith("rank_")]) == 3


def test_shared_job_file_rank_takes_nth_job(tmp_path):
    ap, scratch = tmp_path / "ap", tmp_path / "scratch"
    ap.mkdir()
    jobs = {str(i): job_definition(i, pars=f"-c 'echo {i}'") for i in (911, 912)}
    (ap / "HPCJobs.json").write_text(json.dumps(jobs))
    proc = start_rank(ap, scratch, 1)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert json.loads((ap / "worker_attributes.json").read_text())["jobId"] == "912"


def test_rank_without_a_job_fails_clearly(tmp_path):
    ap, scratch = tmp_path / "ap", tmp_path / "scratch"
    ap.mkdir()
    (ap / "worker_pandaids.json").write_text(json.dumps([921]))
    proc = start_rank(ap, scratch, 5)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 65 and "rank 5 has no job" in err
    assert "Traceback" not in err

"""Helpers to run ./pilot.py as a subprocess, the way a batch system or a site admin would."""

import glob
import json
import os
import subprocess
import sys
import zlib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PILOT = os.path.join(REPO, "pilot.py")


def adler32_of(path):
    value = 1
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            value = zlib.adler32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"


class PilotRun:
    """Paths and results of one finished pilot run."""

    def __init__(self, base, proc, stdout, stderr):
        self.base = base
        self.proc = proc
        self.returncode = proc.returncode
        self.stdout = stdout
        self.stderr = stderr
        dirs = glob.glob(os.path.join(base, "PanDA_Pilot3_*"))
        self.main = dirs[0] if len(dirs) == 1 else None

    def reports(self, panda_id):
        folder = os.path.join(self.main, "reports", str(panda_id))
        files = sorted(glob.glob(os.path.join(folder, "update-*.json")))
        return [(os.path.basename(path), json.load(open(path))) for path in files]

    def final(self, panda_id):
        finals = [data for name, data in self.reports(panda_id) if name.endswith(".final.json")]
        assert len(finals) == 1, f"expected one final report, got {len(finals)}: {self.stderr[-3000:]}"
        return finals[0]

    def pilotlog(self):
        with open(os.path.join(self.main, "pilotlog.txt"), encoding="utf-8") as handle:
            return handle.read()


def pilot_cmd(base, *extra):
    return [sys.executable, PILOT, "-q", "LOCAL", "-a", str(base), *extra]


def run_pilot(base, *extra, timeout=60, env=None):
    proc = subprocess.Popen(pilot_cmd(base, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(base), env=env, stdin=subprocess.DEVNULL)
    out, err = proc.communicate(timeout=timeout)
    return PilotRun(str(base), proc, out, err)


def job_definition(panda_id, trf="sh", pars="-c 'exit 0'", inputs=(), outputs=(), log=True, **extra):
    """A job definition dict as the PanDA server sends it (comma-separated, aligned lists)."""
    job = {"PandaID": str(panda_id), "jobDefinitionID": "1", "taskID": "77", "attemptNr": "1",
           "transformation": trf, "jobPars": pars, "coreCount": "1", "prodSourceLabel": "ptest"}
    if inputs:
        job.update({"inFiles": ",".join(name for name, _ in inputs), "scopeIn": ",".join("test" for _ in inputs),
                    "fsize": ",".join(str(size) for _, (size, _c) in inputs),
                    "checksum": ",".join(f"ad:{c}" for _, (_s, c) in inputs),
                    "GUID": ",".join("NULL" for _ in inputs), "realDatasetsIn": ",".join("ds.in" for _ in inputs),
                    "ddmEndPointIn": ",".join("LOCAL" for _ in inputs)})
    names = list(outputs)
    if log:
        log_name = f"{panda_id}.job.log.tgz"
        names.append(log_name)
        job.update({"logFile": log_name, "logGUID": "11111111-2222-3333-4444-555555555555", "scopeLog": "test"})
    if names:
        job.update({"outFiles": ",".join(names), "scopeOut": ",".join("test" for _ in outputs),
                    "realDatasets": ",".join("ds.out" for _ in names),
                    "ddmEndPointOut": ",".join("LOCAL" for _ in names),
                    "destinationDblock": ",".join("ds.out" for _ in names)})
    job.update(extra)
    return job


def write_job(jobdir, job, name=None):
    path = os.path.join(str(jobdir), name or f"job_{job['PandaID']}.json")
    with open(path, "w") as handle:
        json.dump(job, handle)
    return path


def write_input(storage, name, data):
    path = os.path.join(str(storage), name)
    with open(path, "wb") as handle:
        handle.write(data)
    return (len(data), adler32_of(path))


def alive_pids(pids):
    """The pids of `pids` still running (zombies count as gone)."""
    import psutil

    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    return alive

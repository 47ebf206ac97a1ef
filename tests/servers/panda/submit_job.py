"""Submit jobs to the test PanDA server through its own /api/v1/job/submit, built with the server's own JobSpec and
FileSpec classes (as pandaserver/test/testEvgen.py and shared/recipes/panda-server/20_submit_job.py do).
Run with the server venv's python. Reads a JSON spec on stdin, prints {"panda_ids": [...], "jobs": [...]} on stdout.

usage: submit_job.py URL < spec.json
spec keys (all optional):
  queue           computingSite and destinationSE (TEST_QUEUE)
  label           prodSourceLabel (managed)
  transformation  the payload command or URL the pilot runs (sh)
  job_pars        its arguments, jobParameters (-c 'exit 0')
  inputs          a number of generated inputs (input_<i>.root, 1024 bytes, ad:00000001), or a list of LFNs or of
                  dicts of FileSpec attributes, with the short names lfn, fsize, checksum, guid, scope, dataset too
  outputs         a number of generated outputs (<name>.out<i>.root) or a list of LFNs or of FileSpec attribute dicts
  log             the log file's LFN (<name>.log.tgz)
  name            jobName (pilot_it_<uuid>)
  n_jobs          how many identical jobs (1; each gets its own name and files)
  attrs           any other JobSpec attributes by their JobSpec name, e.g. {"maxWalltime": 600, "coreCount": 8}
"""

import json
import sys
import time
import uuid

import requests
from pandaserver.taskbuffer.FileSpec import FileSpec
from pandaserver.taskbuffer.JobSpec import JobSpec
from pandaserver.taskbuffer.JobUtils import dump_jobs_json

SHORT = {"guid": "GUID", "checksum": "checksum", "lfn": "lfn", "fsize": "fsize", "scope": "scope", "dataset": "dataset"}


def file_spec(item, kind, defaults):
    spec = FileSpec()
    values = dict(defaults)
    values.update({"lfn": item} if isinstance(item, str) else {SHORT.get(k, k): v for k, v in item.items()})
    for key, value in values.items():
        if key not in FileSpec._attributes:
            sys.exit(f"unknown FileSpec attribute {key!r} for {kind} file {item!r}")
        setattr(spec, key, value)
    spec.type = kind
    return spec


def make_job(spec, index):
    queue = spec.get("queue", "TEST_QUEUE")
    job = JobSpec()
    job.jobDefinitionID = int(time.time()) % 10000
    job.jobName = spec.get("name") or f"pilot_it_{uuid.uuid4()}"
    if spec.get("n_jobs", 1) > 1:
        job.jobName += f".{index}"
    dataset = f"panda.test.{uuid.uuid4()}"
    job.AtlasRelease = "Atlas-24.0.0"
    job.homepackage = "AtlasOffline/24.0.0"
    job.transformation = spec.get("transformation", "sh")
    job.jobParameters = spec.get("job_pars", "-c 'exit 0'")
    job.destinationDBlock = dataset
    job.destinationSE = queue
    job.computingSite = queue
    job.currentPriority = job.assignedPriority = 1000
    job.prodSourceLabel = spec.get("label", "managed")
    job.cloud = "WORLD"
    job.VO = "atlas"
    job.coreCount = 1
    job.resource_type = "SCORE"  # acquire_jobs with resource_type=SCORE must see it (spec B.2 item 10)
    job.maxCpuCount = 3600
    job.maxDiskCount = 1000
    job.minRamCount = 100
    job.maxWalltime = 3600
    for key, value in spec.get("attrs", {}).items():
        if key not in JobSpec._attributes:
            sys.exit(f"unknown JobSpec attribute {key!r}")
        setattr(job, key, value)

    inputs = spec.get("inputs", 0)
    if isinstance(inputs, int):
        inputs = [{"lfn": f"input_{i}.root"} for i in range(inputs)]
    for item in inputs:
        job.addFile(file_spec(item, "input", {
            "dataset": "panda.test.input", "prodDBlock": "panda.test.input", "dispatchDBlock": "panda.test.dis",
            "GUID": str(uuid.uuid4()), "fsize": 1024, "checksum": "ad:00000001", "scope": "test", "status": "ready"}))
    outputs = spec.get("outputs", [])
    if isinstance(outputs, int):
        outputs = [f"{job.jobName}.out{i}.root" for i in range(outputs)]
    out_defaults = {"dataset": dataset, "destinationDBlock": dataset, "destinationSE": queue, "scope": "test"}
    for item in outputs:
        job.addFile(file_spec(item, "output", out_defaults))
    job.addFile(file_spec(spec.get("log") or f"{job.jobName}.log.tgz", "log", out_defaults))
    return job


def main():
    url = sys.argv[1]
    spec = json.load(sys.stdin)
    jobs = [make_job(spec, i) for i in range(spec.get("n_jobs", 1))]
    reply = requests.post(f"{url}/api/v1/job/submit", data={"jobs": dump_jobs_json(jobs)},
                          headers={"Accept": "application/json"}, timeout=120)
    if reply.status_code != 200:
        sys.exit(f"submit: HTTP {reply.status_code}: {reply.text[:2000]}")
    body = reply.json()
    if not body.get("success"):
        sys.exit(f"submit failed: {body}")
    ids = []
    for row in body["data"]:
        if not row or row[0] in (None, "NULL"):
            sys.exit(f"submit refused a job: {body}")
        ids.append(int(row[0]))
    json.dump({"panda_ids": ids, "jobs": [{"name": j.jobName, "files": [[f.type, f.lfn] for f in j.Files]}
                                          for j in jobs]}, sys.stdout)


if __name__ == "__main__":
    main()

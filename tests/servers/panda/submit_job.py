"""Submit one job to the test PanDA server through its own /api/v1/job/submit, built with the server's own
JobSpec/FileSpec classes (run with the server's venv). Prints the PandaID.

usage: submit_job.py URL SPEC_JSON
SPEC_JSON: {"queue", "label", "transformation", "job_pars", "inputs": [{"lfn", "fsize", "checksum", "guid"?}],
            "outputs": ["lfn", ...], "max_walltime"?}
"""

import json
import sys
import time
import uuid

import requests

from pandaserver.taskbuffer.FileSpec import FileSpec
from pandaserver.taskbuffer.JobSpec import JobSpec
from pandaserver.taskbuffer.JobUtils import dump_jobs_json

url, spec = sys.argv[1], json.loads(sys.argv[2])
queue = spec.get("queue", "TEST_QUEUE")
dataset = f"panda.test.{uuid.uuid4()}"
job = JobSpec()
job.jobDefinitionID = int(time.time()) % 10000
job.jobName = spec.get("name") or f"pilot_it_{uuid.uuid4()}"
job.AtlasRelease = "Atlas-24.0.0"
job.homepackage = "AtlasOffline/24.0.0"
job.transformation = spec.get("transformation", "sh")
job.destinationDBlock = dataset
job.destinationSE = queue
job.currentPriority = job.assignedPriority = 1000
job.prodSourceLabel = spec.get("label", "managed")
job.computingSite = queue
job.cloud = "WORLD"
job.VO = "atlas"
job.coreCount = 1
job.resource_type = "SCORE"
job.maxCpuCount = 3600
job.maxDiskCount = 1000
job.minRamCount = 100
job.maxWalltime = spec.get("max_walltime", 3600)
job.jobParameters = spec.get("job_pars", "-c 'exit 0'")
for item in spec.get("inputs", []):
    f = FileSpec()
    f.lfn, f.fsize, f.checksum = item["lfn"], item["fsize"], item["checksum"]
    f.dataset = f.prodDBlock = "panda.test.input"
    f.dispatchDBlock = "panda.test.dis"
    f.GUID = item.get("guid") or str(uuid.uuid4())
    f.scope, f.type, f.status = "test", "input", "ready"
    job.addFile(f)
for lfn in spec.get("outputs", []):
    f = FileSpec()
    f.lfn = lfn
    f.dataset = f.destinationDBlock = dataset
    f.destinationSE, f.scope, f.type = queue, "test", "output"
    job.addFile(f)
log = FileSpec()
log.lfn = spec.get("log") or f"{job.jobName}.log.tgz"
log.dataset = log.destinationDBlock = dataset
log.destinationSE, log.scope, log.type = queue, "test", "log"
job.addFile(log)
reply = requests.post(f"{url}/api/v1/job/submit", data={"jobs": dump_jobs_json([job])},
                      headers={"Accept": "application/json"}, timeout=120)
reply.raise_for_status()
body = reply.json()
if not body.get("success"):
    sys.exit(f"submit failed: {body}")
print(body["data"][0][0])

"""pilot.py jobs writing to a real S3 server (moto_server): log tarballs to the queue's object store, and
alternative stage-out when the primary output storage fails (Pilot 3's allow_altstageout / altStageOut)."""

import json
import os
import subprocess
import sys
import tarfile

from tests.e2e.pilotrun import PILOT, PilotRun, job_definition, write_job


def run(s3, tmp_path, job, astorages, params=None, env=None):
    jobdir = tmp_path / "jobs"
    jobdir.mkdir()
    write_job(jobdir, job)
    ddm = tmp_path / "ddm.json"
    ddm.write_text(json.dumps({
        "OS_LOGS_TEST": s3.storage_entry("pilot-logs", "OS_LOGS"),
        "OS_DATA": s3.storage_entry("pilot-data", "OS_ES"),
        "OS_ALT": s3.storage_entry("pilot-alt", "OS_ES"),
        "OS_GONE": s3.storage_entry("no-such-bucket", "OS_ES")}))
    queue = tmp_path / "queue.json"
    queue.write_text(json.dumps({"nickname": "OSQ", "state": "ACTIVE", "status": "online", "params": params or {},
                                 "copytools": {"s3": {}},
                                 "acopytools": {"write_lan": ["s3"], "pl": ["s3"], "read_lan": ["mv"],
                                                "es_events_read": ["s3"]},
                                 "astorages": astorages}))
    cmd = [sys.executable, PILOT, "-q", "OSQ", "--queuedata-url", str(queue), "--job-source", f"local:{jobdir}",
           "--storagedata-url", str(ddm), "-a", str(tmp_path)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    proc = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=120,
                          env=dict(clean, AWS_SHARED_CREDENTIALS_FILE="/nonexistent", **s3.env(), **(env or {})))
    return PilotRun(str(tmp_path), proc, proc.stdout, proc.stderr)


def test_log_to_object_store_and_outputs_to_alternative(s3, tmp_path):
    """Outputs: the primary (a bucket that does not exist) fails, the queue allows alternative stage-out, they
    land on the next write_lan storage. The log goes to the queue's pl object store although the job names
    OS_DATA (which becomes its alternative)."""
    job = job_definition(5001, pars="-c 'echo one > out1.dat; echo two > out2.dat'", outputs=["out1.dat", "out2.dat"],
                         ddmEndPointOut="OS_GONE,OS_GONE,OS_DATA")
    result = run(s3, tmp_path, job, {"write_lan": ["OS_GONE", "OS_ALT"], "pl": ["OS_LOGS_TEST"]},
                 params={"allow_altstageout": True})
    final = result.final(5001)
    assert final["state"] == "finished", (final.get("pilotErrorDiag"), result.stderr[-3000:])
    files = json.loads(final["xml"])
    assert {files[n]["endpoint"] for n in ("out1.dat", "out2.dat")} == {"OS_ALT"}
    assert files["5001.job.log.tgz"]["endpoint"] == "OS_LOGS_TEST"
    assert s3.get("pilot-alt", "OSQ/out1.dat") == b"one\n" and s3.get("pilot-alt", "OSQ/out2.dat") == b"two\n"
    log_bytes = s3.get("pilot-logs", "OSQ/5001.job.log.tgz")
    (tmp_path / "log.tgz").write_bytes(log_bytes)
    with tarfile.open(tmp_path / "log.tgz") as tar:
        assert any(name.endswith("payload.stdout") for name in tar.getnames())
    assert "alternative stage-out" in result.pilotlog()


def test_no_alternative_unless_allowed(s3, tmp_path):
    job = job_definition(5002, pars="-c 'echo x > out.dat'", outputs=["out.dat"], altStageOut="off")
    result = run(s3, tmp_path, job, {"write_lan": ["OS_GONE", "OS_ALT"], "pl": ["OS_LOGS_TEST"]},
                 params={"allow_altstageout": True})
    final = result.final(5002)
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1137, final.get("pilotErrorDiag")
    assert "NoSuchBucket" in final["pilotErrorDiag"]
    assert "OSQ/out.dat" not in s3.keys_of("pilot-alt")
    assert "OSQ/5002.job.log.tgz" in s3.keys_of("pilot-logs")  # the log still goes out


def test_es_merge_job_reads_range_outputs_from_the_object_store(s3, tmp_path):
    """A merge job (eventServiceMerge) is a plain job whose inputs are range outputs on the object store: read
    through the es_events_read activity (here s3 on OS_DATA), checked like any input, merged by the payload."""
    import zlib

    parts = {f"91001-1-1-{i}-1.out_{i}.dat": f"range {i}\n".encode() for i in range(1, 4)}
    inputs = []
    for name, data in parts.items():
        s3.put("pilot-data", f"OSQ/{name}", data)
        inputs.append((name, (len(data), f"{zlib.adler32(data) & 0xFFFFFFFF:08x}")))
    names = " ".join(parts)
    job = job_definition(5003, pars=f"-c 'cat {names} > HITS.merged'", inputs=inputs, outputs=["HITS.merged"],
                         eventServiceMerge="True", ddmEndPointIn="OS_DATA,OS_DATA,OS_DATA")
    result = run(s3, tmp_path, job, {"write_lan": ["OS_ALT"], "pl": ["OS_LOGS_TEST"]})
    final = result.final(5003)
    assert final["state"] == "finished", (final.get("pilotErrorDiag"), result.stderr[-3000:])
    assert s3.get("pilot-alt", "OSQ/HITS.merged") == b"".join(parts.values())


def test_event_service_kinds_this_channel_cannot_run_are_refused(s3, tmp_path):
    """An event-service job from a local job file (no event ranges there) and an HPO job are refused with 1300,
    never run as plain jobs (the payload would have made the file)."""
    for panda_id, extra in ((5004, {"eventService": "True", "jobsetID": "9"}),
                            (5005, {"eventService": "True", "isHPO": "True"})):
        base = tmp_path / str(panda_id)
        base.mkdir()
        job = job_definition(panda_id, pars="-c 'touch ran.txt'", **extra)
        final = run(s3, base, job, {"write_lan": ["OS_ALT"], "pl": ["OS_LOGS_TEST"]}).final(panda_id)
        assert final["state"] == "failed" and final["pilotErrorCode"] == 1300, final.get("pilotErrorDiag")

"""The local channel: the built-in job, job directories shared by pilots, atomic reports."""

import json
import os
import types

from pilot.channels.local import LocalChannel, fake_job_definition
from pilot.config import load_config
from pilot.job import parse_job
from pilot.transfer.checksum import file_checksum


def ctx_for(tmp_path):
    return types.SimpleNamespace(config=load_config(env={}),
                                 paths=types.SimpleNamespace(main=str(tmp_path), input_dir=str(tmp_path / "s")))


def test_fake_job_is_valid_and_its_input_matches(tmp_path):
    raw = fake_job_definition(1, str(tmp_path))
    job = parse_job(raw)
    assert not job.errors and len(job.inputs) == 1 and len(job.outputs) == 1 and job.logfile
    src = tmp_path / job.inputs[0].lfn
    assert job.inputs[0].checksum == file_checksum(str(src)) and job.inputs[0].filesize == os.path.getsize(src)


def test_job_dir_claimed_once_across_channels(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    for i in range(1, 7):
        (jobs / f"{i}.json").write_text(json.dumps({"PandaID": i, "transformation": "sh"}))
    (jobs / "batch.json").write_text(json.dumps({"10": {"transformation": "sh"}, "11": {"transformation": "sh"}}))
    (jobs / "broken.json").write_text("{oops")
    (jobs / "noid.json").write_text(json.dumps({"transformation": "sh"}))
    first, second = LocalChannel(ctx_for(tmp_path), str(jobs)), LocalChannel(ctx_for(tmp_path), str(jobs))
    got = []
    for _ in range(20):
        for channel in (first, second):
            got += [job.jobid for job in channel.fetch(1)]
    assert sorted(got, key=int) == ["1", "2", "3", "4", "5", "6", "10", "11"]
    assert not [name for name in os.listdir(jobs) if name.endswith(".json")]


def test_reports_are_numbered_and_final_marked(tmp_path):
    channel = LocalChannel(ctx_for(tmp_path))
    job = parse_job({"PandaID": 3, "transformation": "sh"})
    for state, final in (("starting", False), ("running", False), ("finished", True)):
        reply = channel.update(job, {"state": state, "jobId": "3"}, final)
        job.updates_sent += 1
        assert reply.ok and json.load(open(reply.where))["state"] == state
    names = sorted(os.listdir(tmp_path / "reports" / "3"))
    assert names == ["update-001-starting.json", "update-002-running.json", "update-003-finished.final.json"]

"""The local channel: the built-in job, job directories shared by pilots, atomic reports."""

import json
import logging
import os
import shlex
import stat
import subprocess
import threading
import types
import uuid

import pytest

from pilot.channels.local import FAKE_BASE_ID, LocalChannel, fake_job_definition
from pilot.files import write_json_atomic
from pilot.config import load_config
from pilot.errors import PilotError
from pilot.jobparser import parse_job
from pilot.transfer.checksum import file_checksum


def make_ctx(tmp_path, env=None):
    paths = types.SimpleNamespace(main=str(tmp_path / "main"), input_dir=str(tmp_path / "storage"),
                                  output_dir=str(tmp_path / "out"))
    return types.SimpleNamespace(config=load_config(env=env or {}), paths=paths)


def job_dir(tmp_path, files):
    folder = tmp_path / "jobs"
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
    return folder


def drain(channel, per_call=1, limit=100):
    ids = []
    for _ in range(limit):
        jobs = channel.fetch(per_call)
        if not jobs:
            return ids
        ids += [job.jobid for job in jobs]
    raise AssertionError("the channel never ran dry")


# --- the built-in job --------------------------------------------------------------------------------------

def test_fake_job_definition_is_valid_and_its_input_matches(tmp_path):
    raw = fake_job_definition(1, str(tmp_path / "storage"))
    assert all(isinstance(value, str) for value in raw.values())  # like a server definition: strings
    job = parse_job(raw)
    assert job.errors == [] and job.jobid == str(FAKE_BASE_ID + 1)
    [spec] = job.inputs
    src = tmp_path / "storage" / spec.lfn
    assert spec.checksum == file_checksum(str(src)) and spec.filesize == os.path.getsize(src)
    assert spec.scope == "local" and spec.ddmendpoint == "LOCAL"
    assert [out.lfn for out in job.outputs] == [f"fake.{job.jobid}.output.txt"] and job.outputs[0].scope == "local"
    assert job.logfile.lfn == f"fake.{job.jobid}.job.log.tgz" and job.logfile.scope == "local"
    assert uuid.UUID(job.logfile.guid) and job.logfile.guid.endswith(f"{int(job.jobid):012d}")


def test_fake_job_payload_really_runs_on_its_input(tmp_path):
    raw = fake_job_definition(3, str(tmp_path))
    job = parse_job(raw)
    args = shlex.split(job.jobpars)
    result = subprocess.run([job.transformation] + args, cwd=tmp_path, capture_output=True, text=True, timeout=20,
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PandaID": job.jobid})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"fake job {job.jobid} processed 1000 events"
    lines = (tmp_path / job.outputs[0].lfn).read_text().splitlines()
    assert len(lines) == 1001 and lines[0] == f"EVENT 0001 OF FAKE JOB {job.jobid}: X=7 Y=13"
    assert lines[-1].endswith(job.inputs[0].lfn)  # sha1sum line


def test_fake_job_input_is_made_once(tmp_path):
    first = fake_job_definition(1, str(tmp_path))
    path = tmp_path / f"fake.{FAKE_BASE_ID + 1}.input.txt"
    before = os.stat(path).st_mtime_ns
    assert fake_job_definition(1, str(tmp_path)) == first and os.stat(path).st_mtime_ns == before


def test_channel_without_a_directory_serves_fake_jobs(tmp_path):
    channel = LocalChannel(make_ctx(tmp_path))
    jobs = channel.fetch(2) + channel.fetch(1)
    assert [job.jobid for job in jobs] == [str(FAKE_BASE_ID + n) for n in (1, 2, 3)]
    assert all(not job.errors for job in jobs)
    assert sorted(os.listdir(tmp_path / "storage")) == sorted(job.inputs[0].lfn for job in jobs)


# --- local:DIR ---------------------------------------------------------------------------------------------

def test_files_are_claimed_by_rename(tmp_path):
    folder = job_dir(tmp_path, {"a.json": {"PandaID": 1, "transformation": "sh"}, "notes.txt": "not a job"})
    channel = LocalChannel(make_ctx(tmp_path), str(folder))
    assert [job.jobid for job in channel.fetch(5)] == ["1"]
    assert sorted(os.listdir(folder)) == sorted([".claimed", "notes.txt", f"a.json.taken.{os.getpid()}"])
    assert channel.fetch(1) == []


def test_two_channels_never_get_the_same_file(tmp_path):
    files = {f"{i:02d}.json": {"PandaID": i, "transformation": "sh"} for i in range(1, 13)}
    folder = job_dir(tmp_path, files)
    first, second = LocalChannel(make_ctx(tmp_path), str(folder)), LocalChannel(make_ctx(tmp_path), str(folder))
    got = {"first": [], "second": []}
    for _ in range(20):
        got["first"] += [job.jobid for job in first.fetch(1)]
        got["second"] += [job.jobid for job in second.fetch(1)]
    assert got["first"] and got["second"]
    assert not set(got["first"]) & set(got["second"])
    assert sorted(got["first"] + got["second"], key=int) == [str(i) for i in range(1, 13)]
    assert not [name for name in os.listdir(folder) if name.endswith(".json")]


def test_concurrent_channels_share_a_directory(tmp_path):
    folder = job_dir(tmp_path, {f"{i:03d}.json": {"PandaID": i, "transformation": "sh"} for i in range(1, 61)})
    results = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def pilot(index):
        channel = LocalChannel(make_ctx(tmp_path), str(folder))
        start.wait()
        results[index] = drain(channel)

    threads = [threading.Thread(target=pilot, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    everything = [jobid for ids in results for jobid in ids]
    assert sorted(everything, key=int) == [str(i) for i in range(1, 61)]  # each exactly once


def test_harvester_style_documents(tmp_path):
    folder = job_dir(tmp_path, {"HPCJobs.json": {
        "1001": {"transformation": "sh", "jobPars": "-c true"},
        "1002": {"transformation": "sh", "PandaID": 1003},  # an id inside the definition wins
    }})
    channel = LocalChannel(make_ctx(tmp_path), str(folder))
    jobs = channel.fetch(1) + channel.fetch(5)
    assert [job.jobid for job in jobs] == ["1001", "1003"]
    assert jobs[0].jobpars == "-c true" and jobs[0].jobid == "1001"
    assert channel.fetch(1) == []


def test_unusable_files_are_skipped_with_a_log(tmp_path, caplog):
    folder = job_dir(tmp_path, {
        "1-broken.json": "{oops",
        "2-latin1.json": b'{"PandaID": 5, "jobPars": "caf\xe9"}',
        "3-list.json": [1, 2, 3],
        "4-noid.json": {"transformation": "sh"},
        "5-badid.json": {"PandaID": "../../etc", "transformation": "sh"},
        "6-mixed.json": {"abc": {"transformation": "sh"}, "77": {"transformation": "sh"}},
        "7-empty.json": "",
        "8-good.json": {"PandaID": 8, "transformation": "sh"},
    })
    (folder / "9-dir.json").mkdir()
    channel = LocalChannel(make_ctx(tmp_path), str(folder))
    with caplog.at_level(logging.ERROR, logger="pilot.channels.local"):
        ids = drain(channel)
    assert ids == ["77", "8"]
    messages = [record.getMessage() for record in caplog.records]
    for name in ("1-broken", "2-latin1", "3-list", "4-noid", "5-badid", "6-mixed", "7-empty", "9-dir"):
        assert any(name in text and "skipped" in text for text in messages), name
    assert [name for name in os.listdir(folder) if name.endswith(".json")] == ["9-dir.json"]  # none read twice


def test_the_configured_field_limit_applies(tmp_path):
    folder = job_dir(tmp_path, {"big.json": {"PandaID": 9, "transformation": "sh", "jobPars": "x" * 200}})
    channel = LocalChannel(make_ctx(tmp_path, {"PILOT_CFG_FILE_MAX_FIELD_LENGTH": "100"}), str(folder))
    [job] = channel.fetch(1)
    assert job.error_code == 1302 and "limit 100" in job.error_diag


def test_an_empty_directory_has_no_jobs(tmp_path):
    assert LocalChannel(make_ctx(tmp_path), str(job_dir(tmp_path, {}))).fetch(3) == []


def test_a_missing_directory_is_a_configuration_error_and_a_vanished_one_1008(tmp_path):
    with pytest.raises(PilotError) as caught:
        LocalChannel(make_ctx(tmp_path), str(tmp_path / "absent"))
    assert caught.value.code == 1103 and "absent" in caught.value.diag
    (tmp_path / "gone").mkdir()
    channel = LocalChannel(make_ctx(tmp_path), str(tmp_path / "gone"))
    (tmp_path / "gone").rmdir()
    with pytest.raises(PilotError) as caught:
        channel.fetch(1)
    assert caught.value.code == 1008 and "gone" in caught.value.diag


# --- reports -----------------------------------------------------------------------------------------------

def test_updates_are_numbered_and_the_final_one_is_marked(tmp_path):
    ctx = make_ctx(tmp_path)
    channel = LocalChannel(ctx)
    job = parse_job({"PandaID": 3, "transformation": "sh"})
    sent = []
    for state, final in (("starting", False), ("running", False), ("running", False), ("finished", True)):
        data = {"jobId": "3", "state": state, "n": len(sent)}
        reply = channel.update(job, data, final)
        assert reply.ok and reply.commands == [] and os.path.isfile(reply.where)
        with open(reply.where, encoding="utf-8") as handle:
            assert json.load(handle) == data
        sent.append(os.path.basename(reply.where))
    assert sent == ["update-001-starting.json", "update-002-running.json", "update-003-running.json",
                    "update-004-finished.final.json"]
    folder = os.path.join(ctx.paths.main, "reports", "3")
    assert sorted(os.listdir(folder)) == sorted(sent)  # and no temporary files
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(os.path.join(folder, sent[-1])).st_mode) == 0o644 & ~umask  # readable, not writable


def test_each_job_has_its_own_report_folder(tmp_path):
    ctx = make_ctx(tmp_path)
    channel = LocalChannel(ctx)
    for jobid in ("11", "12"):
        channel.update(parse_job({"PandaID": jobid, "transformation": "sh"}), {"state": "failed"}, True)
    assert sorted(os.listdir(os.path.join(ctx.paths.main, "reports"))) == ["11", "12"]


def test_a_report_is_replaced_atomically(tmp_path):
    path = str(tmp_path / "update-001-running.json")
    write_json_atomic(path, {"state": "running", "v": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"state": "running", "v": object()})  # fails half way through the dump
    with open(path, encoding="utf-8") as handle:
        assert json.load(handle) == {"state": "running", "v": 1}  # the old report, whole
    assert os.listdir(tmp_path) == ["update-001-running.json"]  # and no temporary left behind
    write_json_atomic(path, {"state": "running", "v": 2})
    with open(path, encoding="utf-8") as handle:
        assert json.load(handle)["v"] == 2

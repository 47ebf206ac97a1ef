"""Primary/alternative output storage (Pilot 3's prepare_destinations), the alternative stage-out switch, and the
job-definition keys behind direct access and the event service."""

import types

from pilot.job import FileSpec
from pilot.jobparser import parse_job
from pilot.queuedata import from_dict
from pilot.transfer import destinations
from pilot.trigger import Trigger


def ctx(astorages, params=None):
    return types.SimpleNamespace(queuedata=from_dict({"nickname": "Q", "astorages": astorages,
                                                      "params": params or {}}, "Q"), abort=Trigger())


def test_prepare_keeps_listed_endpoint_and_demotes_others():
    c = ctx({"write_lan": ["A", "B"], "pl": ["LOGS"]})
    listed, other, none = (FileSpec("x", "output", ddmendpoint="B"), FileSpec("y", "output", ddmendpoint="JOB"),
                           FileSpec("z", "output"))
    destinations.prepare(c, [listed, other, none], ("write_lan",))
    assert (listed.ddmendpoint, listed.ddmendpoint_alt) == ("B", "A")
    assert (other.ddmendpoint, other.ddmendpoint_alt) == ("A", "JOB")
    assert (none.ddmendpoint, none.ddmendpoint_alt) == ("A", "B")
    log = FileSpec("log", "log", ddmendpoint="A")
    destinations.prepare(c, [log], ("pl", "write_lan"))
    assert (log.ddmendpoint, log.ddmendpoint_alt) == ("LOGS", "A")


def test_allow_and_candidates():
    job = types.SimpleNamespace(alt_stageout="", kill=Trigger())
    assert not destinations.allow(ctx({}), job)
    assert destinations.allow(ctx({}, {"allow_altstageout": "True"}), job)
    job.alt_stageout = "off"
    assert not destinations.allow(ctx({}, {"allow_altstageout": True}), job)
    job.alt_stageout = "on"
    assert destinations.allow(ctx({}), job)
    failed = FileSpec("a", "output", ddmendpoint="A", ddmendpoint_alt="B", status="failed", status_code=1137)
    missing = FileSpec("b", "output", ddmendpoint="A", ddmendpoint_alt="B", status="failed", status_code=1165)
    no_alt = FileSpec("c", "output", ddmendpoint="A", status="failed", status_code=1137)
    done = FileSpec("d", "output", ddmendpoint="A", ddmendpoint_alt="B", status="transferred")
    c = ctx({})
    assert destinations.retry_candidates(c, job, [failed, missing, no_alt, done]) == [failed]
    assert (failed.ddmendpoint, failed.ddmendpoint_alt, failed.status) == ("B", "", "")
    c.abort.fire(1201, "SIGTERM")
    again = FileSpec("e", "output", ddmendpoint="A", ddmendpoint_alt="B", status="failed", status_code=1137)
    assert destinations.retry_candidates(c, job, [again]) == []


def base(**extra):
    raw = {"PandaID": "1", "transformation": "sh", "jobPars": "-c true"}
    raw.update(extra)
    return parse_job(raw)


def test_job_kinds_and_access_mode():
    assert base().es_kind == "" and base().access_mode == ""
    assert base(eventService="True").es_kind == "eventservice"
    assert base(eventService=True, jobsetID="7").jobset_id == "7"
    assert base(eventServiceMerge="True").es_kind == "esmerge"
    assert base(eventService="True", isHPO="True").es_kind == "hpo"
    assert base(eventService="True", isJumbo="True").es_kind == "jumbo"
    assert base(eventService="False").es_kind == ""
    assert base(transferType="direct").access_mode == "direct"
    assert base(transferType="direct", jobPars="x --useLocalIO").access_mode == "copy"
    assert base(jobPars="x --accessmode=direct").access_mode == "direct"
    assert base(altStageOut="ON").alt_stageout == "on"
    assert not base(eventService="True").failed

"""Each stage on its own, with a real Context and a fake reporter: no pilot.py, no pipeline."""

import os
import stat

import pytest

from pilot.channels.base import Reply
from pilot.config import load_config
from pilot.context import Context, Paths
from pilot.errors import PilotError
from pilot.job import JobState
from pilot.jobparser import parse_job
from pilot.queuedata import BUILTIN_LOCAL, from_dict
from pilot.settings import Settings
from pilot.stages.finalize import FinalizeStage
from pilot.stages.retrieve import RetrieveThread
from pilot.stages.stagein import StageInStage
from pilot.stages.validate import ValidateStage
from pilot.transfer.checksum import file_checksum


class Reporter:
    channel = None

    def __init__(self):
        self.reports = []

    def report(self, job, final=False, metadata=None):
        self.reports.append((job.state, final))
        return Reply(ok=True, where="report-file")

    def publish(self, job):
        pass

    def running(self, job):
        pass


def context(tmp_path, **settings):
    main = tmp_path / "main"
    storage = tmp_path / "storage"
    main.mkdir(parents=True)
    storage.mkdir()
    return Context(config=load_config(env={}), settings=Settings(queue="LOCAL", **settings),
                   queuedata=from_dict(dict(BUILTIN_LOCAL), "LOCAL"),
                   paths=Paths(source=str(tmp_path), main=str(main), input_dir=str(storage), output_dir=str(storage)))


def job(**fields):
    definition = {"PandaID": 11, "transformation": "sh", "jobPars": "-c true"}
    definition.update(fields)
    return parse_job(definition)


def test_validate_makes_the_work_dir_and_a_private_secrets_file(tmp_path):
    ctx = context(tmp_path)
    j = job(secrets='{"token": "s"}')
    ValidateStage(ctx, Reporter()).process(j)
    assert j.workdir == os.path.join(ctx.paths.main, "PanDA_Pilot-11") and os.path.isdir(j.workdir)
    secrets = os.path.join(j.workdir, ctx.config.pilot.pandasecrets)
    assert stat.S_IMODE(os.stat(secrets).st_mode) == 0o600
    with pytest.raises(PilotError) as err:  # the same job twice
        ValidateStage(ctx, Reporter()).process(job())
    assert err.value.code == 1199


def test_validate_refuses_inputs_larger_than_the_queue_allows(tmp_path):
    ctx = context(tmp_path)
    big = job(inFiles="a.root", scopeIn="s", fsize=str(20 << 30), GUID="NULL", realDatasetsIn="d", ddmEndPointIn="E")
    with pytest.raises(PilotError) as err:
        ValidateStage(ctx, Reporter()).process(big)
    assert err.value.code == 1168 and not os.path.exists(os.path.join(ctx.paths.main, "PanDA_Pilot-11"))


def test_stagein_reports_starting_and_copies_the_inputs(tmp_path):
    ctx = context(tmp_path)
    (tmp_path / "storage" / "in.txt").write_text("data\n")
    digest = file_checksum(str(tmp_path / "storage" / "in.txt"))["adler32"]
    j = job(inFiles="in.txt", scopeIn="s", fsize="5", checksum=f"ad:{digest}", GUID="NULL", realDatasetsIn="d",
            ddmEndPointIn="LOCAL")
    reporter = Reporter()
    ValidateStage(ctx, reporter).process(j)
    StageInStage(ctx, reporter).process(j)
    assert reporter.reports == [(JobState.STAGEIN, False)]
    assert not j.failed and open(os.path.join(j.workdir, "in.txt")).read() == "data\n"


def test_stagein_of_a_missing_input_fails_the_job_with_its_code(tmp_path):
    ctx = context(tmp_path)
    j = job(inFiles="gone.txt", scopeIn="s", fsize="5", GUID="NULL", realDatasetsIn="d", ddmEndPointIn="LOCAL")
    ValidateStage(ctx, Reporter()).process(j)
    StageInStage(ctx, Reporter()).process(j)
    assert j.failed and j.error_code in (1099, 1103, 1331)


def test_finalize_reports_the_final_state_and_removes_the_work_dir_unless_told(tmp_path):
    ctx = context(tmp_path)
    reporter = Reporter()
    done = job()
    ValidateStage(ctx, reporter).process(done)
    FinalizeStage(ctx, reporter).process(done)
    assert reporter.reports == [(JobState.FINISHED, True)] and not os.path.exists(done.workdir)
    assert os.path.exists(os.path.join(ctx.paths.main, ctx.config.pilot.timing_file))
    kept = job(PandaID=12)
    ValidateStage(ctx, reporter).process(kept)
    kept.fail(1099, "no input")
    kept.commands.put("nocleanup")  # from the server, queued for the owner, applied when it takes the job
    kept.apply_commands()
    FinalizeStage(ctx, reporter).process(kept)
    assert reporter.reports[-1] == (JobState.FAILED, True) and os.path.isdir(kept.workdir)


class Channel:
    name = "test"

    def __init__(self, answers):
        self.answers = list(answers)

    def fetch(self, max_jobs=1):
        answer = self.answers.pop(0) if self.answers else []
        if isinstance(answer, Exception):
            raise answer
        return answer


def run_retrieve(ctx, channel):
    import queue

    out = queue.Queue()
    thread = RetrieveThread(ctx, channel, out)
    thread.start()
    items = []
    while True:
        item = out.get(timeout=10)
        items.append(item)
        if not hasattr(item, "jobid"):
            break
        thread.release_slot()  # the job was finalized
    thread.join(5)
    return thread, items


def test_retrieve_hands_jobs_on_until_the_channel_has_none(tmp_path):
    ctx = context(tmp_path)
    ctx.queuedata.timefloor = 3600  # multi-job: ask again after each job
    a, b = job(PandaID=21), job(PandaID=22)
    thread, items = run_retrieve(ctx, Channel([[a], [b], []]))
    assert items[:2] == [a, b] and "getjob" in a.timing and thread.error_code == 0


def test_retrieve_failures_set_the_exit_code_and_a_bug_aborts_with_1319(tmp_path):
    ctx = context(tmp_path, getjob_failures=2)
    ctx.config = load_config(env={"PILOT_CFG_PILOT_GETJOB_RETRY_INITIAL": "0.01",
                                  "PILOT_CFG_PILOT_GETJOB_RETRY_MAX": "0.01"})
    thread, items = run_retrieve(ctx, Channel([PilotError(1318, "down"), PilotError(1318, "down")]))
    assert thread.failures == 2 and thread.error_code == 1318 and len(items) == 1
    ctx = context(tmp_path / "other")
    thread, items = run_retrieve(ctx, Channel([ValueError("bug")]))
    assert ctx.abort.code == 1319 and "ValueError: bug" in ctx.abort.reason and len(items) == 1

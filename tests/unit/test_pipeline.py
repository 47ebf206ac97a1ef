"""Pipeline routing and the stage base, without pilot.py: stages with two queues and a fake reporter."""

import queue
import types

from pilot.config import load_config
from pilot.jobparser import parse_job
from pilot.pipeline import connect
from pilot.stages.base import STOP, Outbox, Stage
from pilot.trigger import Trigger


class FakeReporter:
    def __init__(self):
        self.calls = []

    def report(self, job, final=False, metadata=None):
        self.calls.append(("report", job.jobid, final))

    def publish(self, job):
        self.calls.append(("publish", job.jobid))

    def running(self, job):
        self.calls.append(("running", job.jobid))


def ctx():
    abort = Trigger("abort")
    return types.SimpleNamespace(config=load_config(env={}), abort=abort, request_abort=abort.fire)


def job(jobid=1):
    return parse_job({"PandaID": jobid, "transformation": "sh"})


def make(name, action=None, for_failed=False):
    class Named(Stage):
        name_ = name
        runs_for_failed_jobs = for_failed
        timing_key = name

        def process(self, j):
            self.seen = getattr(self, "seen", []) + [j.jobid]
            if action:
                action(j)

    return Named


def run_alone(stage, *jobs):
    """Run `stage` as its thread over `jobs`, then STOP; what its outbox received."""
    out = queue.Queue()
    stage.outbox = Outbox(out, None)
    for j in jobs:
        stage.inbox.put(j)
    stage.inbox.put(STOP)
    stage.start()
    stage.join(5)
    items = []
    while not out.empty():
        items.append(out.get())
    return items


def test_a_stage_passes_jobs_on_publishes_them_and_forwards_stop():
    reporter = FakeReporter()
    stage = make("one")(ctx(), reporter)
    a, b = job(1), job(2)
    assert run_alone(stage, a, b) == [a, b, STOP]
    assert stage.seen == ["1", "2"]
    assert ("publish", "1") in reporter.calls and "one" in a.timing


def test_a_failure_in_process_becomes_the_jobs_code_not_a_dead_stage():
    def boom(j):
        raise KeyError("x")

    c = ctx()
    stage = make("bad", boom)(c, FakeReporter())
    a, b = job(1), job(2)
    assert run_alone(stage, a, b) == [a, b, STOP]
    assert a.error_code == 1319 and "internal pilot error in bad: KeyError" in a.error_diag
    assert not c.abort.is_set()


def test_a_failed_or_killed_job_skips_work_unless_the_stage_runs_for_failed_jobs():
    stage = make("skip")(ctx(), FakeReporter())
    killed = job(1)
    killed.kill.fire(1144, "killed")
    run_alone(stage, killed)
    assert not hasattr(stage, "seen") and killed.error_code == 1144
    always = make("always", for_failed=True)(ctx(), FakeReporter())
    run_alone(always, killed)
    assert always.seen == ["1"]


def test_a_broken_outbox_aborts_the_pilot_and_still_stops_the_next_stage():
    class Broken:
        def __init__(self):
            self.items = []

        def put(self, item):
            if item is not STOP:
                raise RuntimeError("routing bug")
            self.items.append(item)

    c = ctx()
    stage = make("one")(c, FakeReporter())
    broken = Broken()
    stage.outbox = Outbox(broken)
    stage.inbox.put(job())
    stage.start()
    stage.join(5)
    assert c.abort.code == 1319 and broken.items == [STOP]


def test_owner_applies_queued_server_commands():
    stage = make("one")(ctx(), FakeReporter())
    a = job()
    a.commands.put("nocleanup")
    run_alone(stage, a)
    assert a.keep_workdir


def test_routing_failed_jobs_jump_to_stageout_then_finalize():
    names = ["validate", "stagein", "execute", "stageout", "finalize"]
    c, reporter = ctx(), FakeReporter()

    def fail_in_stagein(j):
        if j.jobid == "2":
            j.fail(1099, "no input")

    stages = [make(name, fail_in_stagein if name == "stagein" else None,
                   for_failed=name in ("stageout", "finalize"))(c, reporter) for name in names]
    done = queue.Queue()
    connect(stages, done)
    for stage in stages:
        stage.start()
    good, bad = job(1), job(2)
    stages[0].inbox.put(good)
    stages[0].inbox.put(bad)
    stages[0].inbox.put(STOP)
    finished = [done.get(timeout=5) for _ in range(3)]
    assert finished[-1] is STOP and {id(good), id(bad)} == {id(j) for j in finished[:2]}  # bad may overtake
    seen = {stage.name_: sorted(getattr(stage, "seen", [])) for stage in stages}
    assert seen == {"validate": ["1", "2"], "stagein": ["1", "2"], "execute": ["1"], "stageout": ["1", "2"],
                    "finalize": ["1", "2"]}
    assert bad.error_code == 1099
    for stage in stages:
        stage.join(5)
        assert not stage.is_alive()

"""Server commands and the heartbeat schedule (run at 0.2 s periods, waiting on events, never on fixed sleeps)."""

import dataclasses
import threading
import time
import types

from pilot.config import load_config
from pilot.job import parse_job
from pilot.monitor.heartbeat import Heartbeat, apply_commands, run_debug_command
from pilot.trigger import Trigger


def ctx():
    abort = Trigger("abort")
    return types.SimpleNamespace(config=load_config(env={"PILOT_CFG_PILOT_HEARTBEAT": "1",
                                                         "PILOT_CFG_PILOT_DEBUG_HEARTBEAT": "1"}),
                                 drain=Trigger("drain"), abort=abort, request_abort=abort.fire)


def fast_ctx(**pilot):
    """ctx() with sub-second periods ([Pilot] settings are whole seconds in a config file; the scheduler is not)."""
    c = ctx()
    c.config = types.SimpleNamespace(pilot=dataclasses.replace(c.config.pilot, **pilot))
    return c


def job(workdir="", jobid=1):
    j = parse_job({"PandaID": jobid, "transformation": "sh"})
    j.workdir = workdir
    return j


def test_commands():
    c, j = ctx(), job()
    apply_commands(c, j, ["debug"])
    assert j.debug
    apply_commands(c, j, ["debugoff", "softkill"])
    assert not j.debug and c.drain.is_set()
    apply_commands(c, j, ["tobekilled"])
    assert j.kill.code == 1144
    other = job()
    apply_commands(c, other, ["alreadydone"])
    assert other.kill.code == 1236


def test_debug_commands_are_restricted(tmp_path):
    (tmp_path / "payload.stdout").write_text("line1\nline2\n")
    assert run_debug_command("tail -n 1 payload.stdout", str(tmp_path)).strip() == "line2"
    assert "not allowed" in run_debug_command("rm -rf .", str(tmp_path))
    assert "not allowed" in run_debug_command("tail /etc/shadow", str(tmp_path))
    assert "not allowed" in run_debug_command("ls ../..", str(tmp_path))
    assert "not allowed" in run_debug_command("ls;reboot", str(tmp_path))
    assert "not allowed" in run_debug_command("gdb --pid 1", str(tmp_path))
    secret = tmp_path.parent / "secret.txt"
    secret.write_text("SECRET")
    (tmp_path / "jobReport.json").symlink_to(secret)  # the payload points a file it wrote outside its dir
    assert "SECRET" not in run_debug_command("tail jobReport.json", str(tmp_path))
    j = job(str(tmp_path))
    apply_commands(ctx(), j, ["tail -n 2 payload.stdout"])
    assert j.debug_stdout == "line1\nline2\n"


def test_heartbeat_schedule_and_stop():
    sent = []
    beats = {1: threading.Event(), 2: threading.Event()}

    class Pipeline:
        def report(self, j):
            sent.append((j.jobid, time.monotonic()))
            if [jobid for jobid, _ in sent].count("1") >= 2:
                beats[1].set()
            if [jobid for jobid, _ in sent].count("2") >= 2:
                beats[2].set()

    beat = Heartbeat(fast_ctx(heartbeat=0.2, debug_heartbeat=0.2), Pipeline())
    beat.start()
    j = job()
    beat.watch(j)
    assert beats[1].wait(5), "two heartbeats at a 0.2 s interval within 5 s"
    first, second = [when for jobid, when in sent if jobid == "1"][:2]
    assert 0.15 <= second - first <= 1.5
    beat.unwatch(j)
    count = len(sent)
    # a job watched now is due one period later than the unwatched one would have been: by its second heartbeat the
    # unwatched job would have had two more; one may have been on its way when unwatch() was called
    beat.watch(job(jobid=2))
    assert beats[2].wait(5)
    assert [jobid for jobid, _ in sent[count:]].count("1") <= 1  # unwatched: no more heartbeats
    beat.stop()
    beat.join(2)
    assert not beat.is_alive()


def test_lost_heartbeat_kills_the_job():
    c = ctx()
    c.config = load_config(env={"PILOT_CFG_PILOT_LOST_HEARTBEAT": "1"})
    beat = Heartbeat(c, types.SimpleNamespace(report=lambda j: None))
    j = job()
    j.last_heartbeat = time.monotonic() - 10
    beat.beat(j)
    assert j.kill.code == 1317


def test_command_checks_run_between_heartbeats_and_stop_with_the_job():
    """[Pilot] command_check asks the channel for commands between heartbeats (heartbeat 1000 s here)."""
    c = fast_ctx(heartbeat=1000, command_check=0.2)
    checks, beats = [], []
    done = {"1": threading.Event(), "2": threading.Event()}

    class Pipeline:
        def report(self, j):
            beats.append(j)

        def check_commands(self, j):
            checks.append((j.jobid, time.monotonic()))
            if [jobid for jobid, _ in checks].count(j.jobid) >= 2:
                done[j.jobid].set()

    beat = Heartbeat(c, Pipeline())
    beat.start()
    j = job()
    started = time.monotonic()
    beat.watch(j)
    assert done["1"].wait(5), "two command checks at a 0.2 s period within 5 s"
    first, second = [when for jobid, when in checks if jobid == "1"][:2]
    assert first - started >= 0.15 and 0.15 <= second - first <= 1.5
    assert beats == []  # no update was sent for them
    beat.unwatch(j)
    count = len(checks)
    beat.watch(job(jobid=2))  # checked from one period on: job 1 would have had two more checks by its second
    assert done["2"].wait(5)
    assert [jobid for jobid, _ in checks[count:]].count("1") <= 1  # (one may have been on its way)
    beat.stop()
    beat.join(2)


def test_command_check_applies_kill_commands_only_to_a_running_job():
    from pilot.pipeline import Pipeline

    c = ctx()
    j = job()
    asked = []

    def commands(the_job):
        asked.append(the_job.jobid)
        return ["tobekilled"]

    stub = types.SimpleNamespace(ctx=c, channel=types.SimpleNamespace(commands=commands))
    Pipeline.check_commands(stub, j)
    assert j.kill.code == 1144 and asked == ["1"]
    Pipeline.check_commands(stub, j)  # already being killed: the server is not asked again
    assert asked == ["1"]


def test_command_check_without_channel_support_does_nothing():
    from pilot.channels.base import Channel
    from pilot.pipeline import Pipeline

    j = job()
    stub = types.SimpleNamespace(ctx=ctx(), channel=Channel())
    Pipeline.check_commands(stub, j)
    assert not j.kill.is_set()

"""Heartbeat scheduling, and the reporter: server commands, debug output, lost heartbeats, the final update.
Schedules run at 0.2 s periods and the tests wait on events, never on fixed sleeps."""

import dataclasses
import threading
import time
import types

from pilot.channels.base import Reply
from pilot.config import load_config
from pilot.job import JobState
from pilot.jobparser import parse_job
from pilot.monitor.heartbeat import Heartbeat, run_debug_command
from pilot.reporter import Reporter
from pilot.trigger import Trigger


def ctx(**env):
    abort = Trigger("abort")
    config = load_config(env=dict({"PILOT_CFG_PILOT_HEARTBEAT": "1", "PILOT_CFG_PILOT_DEBUG_HEARTBEAT": "1"}, **env))
    return types.SimpleNamespace(config=config, drain=Trigger("drain"), abort=abort, request_abort=abort.fire,
                                 static_update_fields=lambda: {"siteName": "TEST"})


def job(workdir="", jobid=1):
    j = parse_job({"PandaID": jobid, "transformation": "sh"})
    j.workdir = workdir
    return j


class Channel:
    """Records what it was sent; answers with the commands queued in `answers`."""

    def __init__(self, ok=True):
        self.sent = []
        self.answers = []
        self.ok = ok

    def update(self, j, data, final):
        self.sent.append((data["state"], final, dict(data)))
        return Reply(ok=self.ok, commands=self.answers.pop(0) if self.answers else [], where="here")


def test_commands_reach_the_right_owner():
    c, channel = ctx(), Channel()
    reporter = Reporter(c, channel)
    j = job()
    channel.answers = [["debug", "softkill", "nocleanup", "nonsense"]]
    reporter.report(j)
    assert c.drain.is_set()
    assert reporter._interval(j.jobid) == c.config.pilot.debug_heartbeat
    assert not j.keep_workdir  # a message for the owner: applied when the owner takes it
    j.apply_commands()
    assert j.keep_workdir
    channel.answers = [["debugoff", "tobekilled"]]
    reporter._beat(j.jobid)
    assert j.kill.code == 1144 and reporter._interval(j.jobid) == c.config.pilot.heartbeat
    other = job(jobid=2)
    channel.answers = [["alreadydone"]]
    reporter.report(other)
    assert other.kill.code == 1236


def test_first_update_is_starting_then_the_heartbeat_sends_running_snapshots():
    c, channel = ctx(), Channel()
    reporter = Reporter(c, channel)
    j = job()
    j.state = JobState.STAGEIN
    reporter.report(j)
    j.started_at = time.time()
    reporter.publish(j)  # the owner's snapshot
    j.nevents = 5  # changed after the snapshot: the heartbeat must not read the live job
    reporter._beat(j.jobid)
    assert [state for state, _final, _data in channel.sent] == ["starting", "running"]
    assert "startTime" in channel.sent[1][2] and "nEvents" not in channel.sent[1][2]


def test_debug_command_output_goes_with_the_next_update_only(tmp_path):
    (tmp_path / "payload.stdout").write_text("line1\nline2\n")
    c, channel = ctx(), Channel()
    reporter = Reporter(c, channel)
    j = job(str(tmp_path))
    channel.answers = [["tail -n 2 payload.stdout"]]
    reporter.report(j)
    reporter._beat(j.jobid)
    reporter._beat(j.jobid)
    assert "stdout" not in channel.sent[0][2]
    assert channel.sent[1][2]["stdout"] == "line1\nline2\n"
    assert "stdout" not in channel.sent[2][2]


def test_no_heartbeat_after_the_final_update():
    c, channel = ctx(), Channel()
    reporter = Reporter(c, channel)
    j = job()
    reporter.report(j)
    j.state = JobState.FINISHED
    reply = reporter.report(j, final=True)
    assert reply.ok and j.final_report == "here"
    reporter._beat(j.jobid)  # a heartbeat that lost the race
    assert [final for _s, final, _d in channel.sent] == [False, True]
    assert reporter.unreported == []


def test_undelivered_final_update_is_remembered():
    reporter = Reporter(ctx(), Channel(ok=False))
    j = job()
    j.state = JobState.FAILED
    reporter.report(j, final=True)
    assert reporter.unreported == [j.jobid]


def test_lost_heartbeat_kills_the_job():
    c, channel = ctx(PILOT_CFG_PILOT_LOST_HEARTBEAT="1"), Channel(ok=False)
    reporter = Reporter(c, channel)
    j = job()
    reporter.report(j)
    reporter._records[j.jobid].last_ack = time.monotonic() - 10  # nothing acknowledged for 10 s
    reporter._beat(j.jobid)
    assert j.kill.code == 1317


def test_a_failing_send_kills_only_that_job():
    c = ctx()
    reporter = Reporter(c, Channel())
    bad, good = job(jobid=1), job(jobid=2)
    reporter.report(bad)
    reporter.report(good)
    reporter._beat_failed(bad.jobid, RuntimeError("boom"))
    assert bad.kill.code == 1319 and "RuntimeError: boom" in bad.kill.reason
    assert not good.kill.is_set() and not c.abort.is_set()


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


def test_heartbeat_schedule_and_stop():
    sent = []
    beats = {"1": threading.Event(), "2": threading.Event()}

    def send(jobid):
        sent.append((jobid, time.monotonic()))
        if [j for j, _ in sent].count(jobid) >= 2:
            beats[jobid].set()

    beat = Heartbeat(ctx(), send, lambda jobid: 0.2, lambda jobid, exc: None)
    beat.start()
    beat.watch("1")
    assert beats["1"].wait(5), "two heartbeats at a 0.2 s interval within 5 s"
    first, second = [when for j, when in sent if j == "1"][:2]
    assert 0.15 <= second - first <= 1.5
    beat.unwatch("1")
    count = len(sent)
    # a job watched now is due one period later than the unwatched one would have been: by its second heartbeat the
    # unwatched job would have had two more; one may have been on its way when unwatch() was called
    beat.watch("2")
    assert beats["2"].wait(5)
    assert [j for j, _ in sent[count:]].count("1") <= 1  # unwatched: no more heartbeats
    beat.stop()
    beat.join(2)
    assert not beat.is_alive()


def test_beat_soon_sends_at_once_and_a_failure_is_handed_over():
    failed = []
    done = threading.Event()

    def send(jobid):
        raise ValueError(jobid)

    def on_failure(jobid, exc):
        failed.append((jobid, type(exc).__name__))
        done.set()

    c = ctx()
    beat = Heartbeat(c, send, lambda jobid: 3600.0, on_failure)
    beat.start()
    beat.beat_soon("7")
    assert done.wait(5)
    assert failed == [("7", "ValueError")] and not beat.watched("7")
    assert beat.is_alive() and not c.abort.is_set()  # one job's failure does not end the thread
    beat.stop()
    beat.join(2)


def test_command_checks_run_between_heartbeats_and_stop_with_the_job():
    """[Pilot] command_check asks the channel for commands between heartbeats (heartbeat 1000 s here; checks every
    0.2 s: a config file takes whole seconds, the scheduler does not)."""
    c = ctx(PILOT_CFG_PILOT_HEARTBEAT="1000")
    c.config = types.SimpleNamespace(pilot=dataclasses.replace(c.config.pilot, command_check=0.2))
    checks, beats = [], []
    done = {"1": threading.Event(), "2": threading.Event()}

    def check(jobid):
        checks.append((jobid, time.monotonic()))
        if [j for j, _ in checks].count(jobid) >= 2:
            done[jobid].set()

    beat = Heartbeat(c, beats.append, lambda jobid: 1000.0, lambda jobid, exc: None, check)
    beat.start()
    started = time.monotonic()
    beat.watch("1")
    assert done["1"].wait(5), "two command checks at a 0.2 s period within 5 s"
    first, second = [when for j, when in checks if j == "1"][:2]
    assert first - started >= 0.15 and 0.15 <= second - first <= 1.5
    assert beats == []  # no update was sent for them
    beat.unwatch("1")
    count = len(checks)
    beat.watch("2")  # checked from one period on: job 1 would have had two more checks by its second
    assert done["2"].wait(5)
    assert [j for j, _ in checks[count:]].count("1") <= 1  # (one may have been on its way)
    beat.stop()
    beat.join(2)


def test_command_check_applies_kill_commands_only_to_a_running_job():
    asked = []
    channel = Channel()
    channel.commands = lambda the_job: asked.append(the_job.jobid) or ["tobekilled"]
    reporter = Reporter(ctx(), channel)
    j = job()
    reporter.report(j)
    reporter._check(j.jobid)
    assert j.kill.code == 1144 and asked == ["1"]
    reporter._check(j.jobid)  # already being killed: the server is not asked again
    assert asked == ["1"]


def test_command_check_without_channel_support_does_nothing():
    from pilot.channels.base import Channel as Base

    class Quiet(Base):
        def update(self, j, data, final):
            return Reply(ok=True)

    reporter = Reporter(ctx(), Quiet())
    j = job()
    reporter.report(j)
    reporter._check(j.jobid)
    assert not j.kill.is_set()

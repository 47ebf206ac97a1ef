"""The event-range source's wire handling: v1 and legacy replies, bulk updates confirmed range by range when the
server does not acknowledge them, server commands."""

import json

from pilot.channels.panda_protocol import ServerReply
from pilot.eventservice.source import PandaEventSource
from pilot.job import Job


class Channel:
    def __init__(self, replies):
        self.replies, self.calls = replies, []

    def api_call(self, path, body, legacy, form):
        self.calls.append((path, body, legacy, form))
        reply = self.replies.get(path)
        return reply(body) if callable(reply) else reply


def job():
    return Job(jobid="11", jobset_id="22", taskid="33")


def test_fetch_v1_legacy_and_failures():
    ranges = [{"eventRangeID": "33-11-1-1-1", "startEvent": 1, "lastEvent": 2}, {"eventRangeID": 5}]
    channel = Channel({"event/acquire_event_ranges": ServerReply(ok=True, data=ranges)})
    source = PandaEventSource(channel, job())
    assert source.fetch(4) == ranges[:1]  # a range without a string id is dropped
    path, body, legacy, form = channel.calls[0]
    assert body == {"job_id": 11, "jobset_id": 22, "task_id": 33, "n_ranges": 4}
    assert legacy == "getEventRanges" and form == {"pandaID": "11", "jobsetID": "22", "nRanges": "4", "taskID": "33"}
    legacy_reply = ServerReply(ok=True, data={"StatusCode": 0, "eventRanges": json.dumps(ranges[:1])})
    assert PandaEventSource(Channel({"event/acquire_event_ranges": legacy_reply}), job()).fetch(1) == ranges[:1]
    assert PandaEventSource(Channel({"event/acquire_event_ranges": None}), job()).fetch(1) is None
    refused = ServerReply(ok=False, message="denied")
    assert PandaEventSource(Channel({"event/acquire_event_ranges": refused}), job()).fetch(1) is None


def test_bulk_update_then_single_confirmations():
    updates = [{"eventRangeID": "a", "eventStatus": "finished", "coreCount": 1},
               {"eventRangeID": "b", "eventStatus": "failed", "errorCode": 1201, "errorDiag": "x", "coreCount": 1}]
    ok_bulk = ServerReply(ok=True, data={"Returns": [True, True], "Commands": {"11": None}})
    channel = Channel({"event/update_event_ranges": ok_bulk})
    assert PandaEventSource(channel, job()).update(updates) == (True, [])
    assert json.loads(channel.calls[0][1]["event_ranges"]) == updates and channel.calls[0][1]["version"] == 0
    single = ServerReply(ok=True, data={"Command": json.dumps({"11": "softkill"})})
    channel = Channel({"event/update_event_ranges": None, "event/update_single_event_range": single})
    source = PandaEventSource(channel, job())
    assert source.update(updates) == (True, ["softkill", "softkill"])
    singles = [c[1] for c in channel.calls if c[0] == "event/update_single_event_range"]
    assert singles == [{"event_range_id": "a", "event_range_status": "finished", "core_count": 1},
                       {"event_range_id": "b", "event_range_status": "failed", "core_count": 1}]
    channel = Channel({"event/update_event_ranges": None, "event/update_single_event_range": None})
    assert PandaEventSource(channel, job()).update(updates)[0] is False


def test_spooled_range_updates_replayed(tmp_path):
    from pilot.eventservice.reporter import RangeReporter, replay_spooled

    class Down:
        def update(self, updates):
            return False, []

    reporter = RangeReporter(Down(), str(tmp_path), "77", batch=10, interval=60).start()
    reporter.add({"eventRangeID": "1-77-1-1-1", "eventStatus": "finished"})
    reporter.add({"eventRangeID": "1-77-1-2-1", "eventStatus": "failed", "errorCode": 1201})
    import time

    assert reporter.finish(time.monotonic() + 0.2) == 2  # the server is away: both stay in the spool
    got = {}

    class Up:
        def __init__(self, jobid):
            self.jobid = jobid

        def update(self, updates):
            got[self.jobid] = updates
            return True, []

    assert replay_spooled(str(tmp_path), Up) == 2
    assert [u["eventRangeID"] for u in got["77"]] == ["1-77-1-1-1", "1-77-1-2-1"]
    assert not list(tmp_path.iterdir())

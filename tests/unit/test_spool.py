"""The update spool: nothing acknowledged is kept, nothing unacknowledged is lost."""

import json
import os
import time

from pilot.backoff import backoff_delays
from pilot.channels.spool import Spool, deliver, pending_in


def test_write_pending_remove(tmp_path):
    spool = Spool(str(tmp_path / "spool"))
    beat = spool.write("1", {"state": "running"}, final=False)
    final = spool.write("1", {"state": "finished", "jobId": "1"}, final=True)
    assert oct(os.stat(final).st_mode & 0o777) == "0o600"
    pending = spool.pending()
    assert [path for path, _ in pending] == [final]  # heartbeats are not replayed...
    assert not os.path.exists(beat)  # ...and a stale one is dropped
    assert pending[0][1]["data"]["state"] == "finished"
    spool.remove(final)
    assert spool.pending() == []


def test_unreadable_spool_file_is_left_for_a_human(tmp_path, caplog):
    folder = tmp_path / "spool"
    folder.mkdir()
    bad = folder / "9.1.finished.final.update.json"
    bad.write_text("{truncated")
    assert list(pending_in(str(folder))) == []
    assert bad.exists() and "unreadable" in caplog.text


def test_backoff_grows_and_is_capped():
    delays = backoff_delays(1.0, 8.0)
    values = [next(delays) for _ in range(8)]
    assert 0.75 <= values[0] <= 1.25 and 1.5 <= values[1] <= 2.5
    assert all(value <= 8.0 * 1.25 for value in values) and values[-1] >= 8.0 * 0.75


def test_deliver_retries_until_acknowledged():
    answers = iter([None, None, True])
    waits = []
    assert deliver(lambda: next(answers), lambda: time.monotonic() + 100, 0.01, 0.05, waits.append, "t")
    assert len(waits) == 2


def test_deliver_stops_at_deadline_and_on_refusal():
    calls = []
    end = time.monotonic() + 0.2
    assert not deliver(lambda: calls.append(1), lambda: end, 0.05, 0.05, time.sleep, "t")
    assert 2 <= len(calls) <= 8
    assert deliver(lambda: False, lambda: end, 0.05, 0.05, time.sleep, "t") is False


def test_record_is_json(tmp_path):
    spool = Spool(str(tmp_path))
    path = spool.write("5", {"state": "failed", "pilotErrorCode": 1201}, final=True)
    record = json.load(open(path))
    assert record["job_id"] == "5" and record["final"] is True and record["data"]["pilotErrorCode"] == 1201

"""The generic event-service executor: ranges from the server to the payload, answers back, outputs out.

Protocol (docs/eventservice.md): two FIFOs in the job work dir, named by $PILOT_ES_RANGES and $PILOT_ES_REPLIES
(relative to the work dir, so the same inside a container). The pilot writes one JSON object per line to
the ranges FIFO: ``{"type": "range", "eventRangeID": ..., "startEvent": ..., "lastEvent": ..., "LFN": ...,
"GUID": ..., "scope": ...}``, and ``{"type": "end"}`` when there will be no more. The payload answers each range
with one line on the replies FIFO: ``{"eventRangeID": ..., "status": "finished", "output": "<file in the work
dir>" | [files]}`` or ``{"eventRangeID": ..., "status": "failed", "errorCode": N, "errorDiag": "..."}``, and exits
0 after "end". Lines stay under 4 kB so concurrent writers never interleave (PIPE_BUF).

The pilot holds both FIFOs open read-write, so neither side ever blocks opening them and nothing is lost
whoever opens first. It keeps `lookahead` ranges sent and unanswered (fetching from the server ahead of that),
stops sending when the job's or pilot's time left would not cover another range plus [EventService]
stop_margin, stages each finished range's outputs out at once (activity es_events, es_failover as the
alternative) and only then reports the range finished. When the pilot or job is stopped, nothing more is sent;
once the payload is gone, every range not answered (or not stored) is reported failed with the stop's code.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import re
import threading
import time
from typing import Any, Deque, Dict, List, Optional

from ..job import FileSpec, Job
from ..transfer import destinations
from ..threads import guarded
from ..transfer.base import fired_stop, queue_storages
from .reporter import RangeReporter
from .source import RANGE_KEYS, PandaEventSource

log = logging.getLogger(__name__)

RANGES_FIFO, REPLIES_FIFO = "pilot_es_ranges", "pilot_es_replies"
ES_ACTIVITIES = ("es_events", "write_lan", "pw", "default")
FAILOVER_ACTIVITIES = ("es_failover",)
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_STOP_READER = '{"type": "pilot-stop"}\n'


class EventServiceDriver:
    def __init__(self, ctx, job: Job, channel, source=None):
        self.ctx, self.job = ctx, job
        cfg = ctx.config.eventservice
        self.cfg = cfg
        self.source = source or PandaEventSource(channel, job)
        spool = getattr(getattr(channel, "spool", None), "directory", "") or os.path.join(ctx.paths.main, "spool")
        self.reporter = RangeReporter(self.source, spool, job.jobid, cfg.update_batch, cfg.update_interval)
        self.lookahead = cfg.lookahead_per_core * max(1, job.corecount)
        self.cond = threading.Condition()
        self.answers: Deque[Dict[str, Any]] = collections.deque()
        self.ready: Deque[Dict[str, Any]] = collections.deque()  # fetched, not yet sent
        self.sent: Dict[str, Dict[str, Any]] = {}  # sent to the payload, not answered
        self.storing: Dict[str, Dict[str, Any]] = {}  # answered finished, outputs being stored
        self.outbox: "queue.Queue" = queue.Queue()
        self.exhausted = self.ended = self.done = False
        self.counts = collections.Counter()
        self.events_done = 0
        self.first_sent = 0.0
        self.bad_messages = 0
        self._fds: Dict[str, int] = {}
        self._threads: List[threading.Thread] = []

    # --- set-up -------------------------------------------------------------------------------------------
    def prepare(self) -> Dict[str, str]:
        """Make and open the FIFOs; the payload's extra environment."""
        for name in (RANGES_FIFO, REPLIES_FIFO):
            path = os.path.join(self.job.workdir, name)
            os.mkfifo(path, 0o600)
            self._fds[name] = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        return {"PILOT_ES_RANGES": RANGES_FIFO, "PILOT_ES_REPLIES": REPLIES_FIFO,
                "PILOT_ES_LOOKAHEAD": str(self.lookahead)}

    def start(self) -> None:
        self.reporter.start()
        for name, target in (("es-reader", self._read), ("es-feeder", self._feed), ("es-stageout", self._store)):
            thread = guarded(name, target, self.job.kill.fire)  # a bug in it: the job is killed with 1319
            thread.start()
            self._threads.append(thread)

    # --- feeding --------------------------------------------------------------------------------------------
    def _stopping(self) -> bool:
        """Stop feeding at once (the payload is being killed or has ended). A server `softkill` only ends the
        asking: the ranges in flight are finished, then the payload is told "end"."""
        commands = self.reporter.commands
        if "softkill" in commands and not self.exhausted:
            log.info("job %s: server asked for a soft kill: no more event ranges", self.job.jobid)
            self.exhausted = True
        if "tobekilled" in commands and not self.job.kill.is_set():
            self.job.kill.fire(1144, "server command tobekilled (event range update)")
        return fired_stop(self.ctx, self.job) is not None or self.done

    def _time_left(self) -> float:
        left = self.ctx.remaining()
        if self.job.maxwalltime and self.job.started_at:
            left = min(left, self.job.started_at + self.job.maxwalltime - time.time())
        return left - self.cfg.stop_margin

    def _time_short(self) -> bool:
        """Would the ranges in flight plus one more, at the rate so far, end after the time left?"""
        answered = self.counts["finished"] + self.counts["failed"]
        if not answered:
            return self._time_left() <= 0
        seconds_per_range = (time.monotonic() - self.first_sent) / answered
        return (len(self.sent) + 1) * seconds_per_range > self._time_left()

    def _feed(self) -> None:
        delay = 1.0
        while True:
            with self.cond:
                if self._stopping() or self.ended:
                    return
                self._take_answers()
                want = self.lookahead - len(self.sent)
            if want > 0 and not self.ready and not self.exhausted:
                if self._time_short():
                    log.info("job %s: too little time left for more event ranges", self.job.jobid)
                    self.exhausted = True
                else:
                    got = self.source.fetch(max(self.cfg.fetch_batch, want))
                    if got is None:
                        with self.cond:
                            self.cond.wait(delay)
                        delay = min(delay * 2, self.cfg.fetch_retry_max)
                        continue
                    delay = 1.0
                    with self.cond:
                        self.counts["fetched"] += len(got)
                        if self.done or self._stopping():  # too late for the payload: settle them here
                            stop = fired_stop(self.ctx, self.job)
                            for entry in got:
                                self._report(entry, "failed", stop.code if stop else 1224,
                                             f"{stop.reason if stop else 'the payload had ended'}: not started")
                            return
                        self.ready.extend(got)
                    if not got:
                        self.exhausted = True
            messages = []
            with self.cond:
                while self.ready and len(self.sent) < self.lookahead and not self._stopping():
                    if self.counts["fetched"] and self._time_short() and self.sent:
                        self.exhausted = True
                        break
                    messages.append(self._mark_sent(self.ready.popleft()))
                if self.exhausted and not self.ready and not self.sent and not self.ended and not self._stopping():
                    messages.append({"type": "end"})
                    self.ended = True
            # written outside the lock: a payload slow to read must never stop its answers from being taken
            for message in messages:
                self._write(message)
            if self.ended:
                log.info("job %s: no more event ranges (%d fetched): told the payload to finish",
                         self.job.jobid, self.counts["fetched"])
                return
            with self.cond:
                if not self.answers and not self._stopping():
                    self.cond.wait(5.0)

    def _mark_sent(self, entry: Dict[str, Any]) -> Dict[str, Any]:
        """Under self.cond: `entry` is in flight from now on; the message to write."""
        message = {key: entry.get(key) for key in RANGE_KEYS}
        message["type"] = "range"
        self.sent[entry["eventRangeID"]] = dict(entry, sent_at=time.monotonic())
        self.first_sent = self.first_sent or time.monotonic()
        return message

    def _write(self, message: Dict[str, Any]) -> None:
        os.write(self._fds[RANGES_FIFO], (json.dumps(message) + "\n").encode())

    # --- answers --------------------------------------------------------------------------------------------
    def _read(self) -> None:
        with os.fdopen(os.dup(self._fds[REPLIES_FIFO]), "r", encoding="utf-8", errors="replace") as replies:
            for line in replies:
                if line == _STOP_READER:
                    return
                try:
                    message = json.loads(line)
                except ValueError:
                    message = None
                if not isinstance(message, dict) or not isinstance(message.get("eventRangeID"), str):
                    self.bad_messages += 1
                    log.warning("job %s: unreadable event-service reply %r", self.job.jobid, line[:200])
                    continue
                with self.cond:
                    self.answers.append(message)
                    self.cond.notify_all()

    def _take_answers(self) -> None:
        """Under self.cond: route every answer (finished -> stage-out, failed -> report)."""
        while self.answers:
            message = self.answers.popleft()
            entry = self.sent.pop(message["eventRangeID"], None)
            if entry is None:
                self.bad_messages += 1
                log.warning("job %s: reply for unknown or already answered range %s", self.job.jobid,
                            message["eventRangeID"][:80])
                continue
            status = str(message.get("status", "")).lower()
            if status == "finished":
                self.storing[entry["eventRangeID"]] = entry
                self.outbox.put((entry, message))
            else:
                code = message.get("errorCode") if isinstance(message.get("errorCode"), int) else 1224
                self._report(entry, "fatal" if status == "fatal" else "failed", code,
                             str(message.get("errorDiag") or f"payload answered {status or 'nothing'}"))

    def _report(self, entry: Dict[str, Any], status: str, code: int = 0, diag: str = "") -> None:
        update: Dict[str, Any] = {"eventRangeID": entry["eventRangeID"], "eventStatus": status,
                                  "coreCount": self.job.corecount}
        if status != "finished":
            update.update(errorCode=int(code), errorDiag=diag[:500])
            self.counts["failed"] += 1
        else:
            self.counts["finished"] += 1
            try:
                self.events_done += int(entry.get("lastEvent")) - int(entry.get("startEvent")) + 1
            except (TypeError, ValueError):
                self.events_done += 1
        self.reporter.add(update)

    # --- outputs -----------------------------------------------------------------------------------------------
    def _store(self) -> None:
        while True:
            item = self.outbox.get()
            if item is None:
                return
            batch = [item]
            while True:
                try:
                    more = self.outbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.outbox.put(None)
                    break
                batch.append(more)
            self._store_batch(batch)

    def _outputs(self, message: Dict[str, Any]) -> List[str]:
        value = message.get("output") or []
        names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        root = os.path.realpath(self.job.workdir)
        paths = []
        for name in names:
            path = os.path.realpath(os.path.join(root, str(name)))
            if not path.startswith(root + os.sep) or os.path.islink(os.path.join(root, str(name))) \
                    or not os.path.isfile(path):
                raise ValueError(f"output {str(name)[:120]!r} is not a regular file in the work dir")
            paths.append(path)
        return paths

    def _store_batch(self, batch) -> None:
        from ..transfer.jobfiles import transfer_files

        files, owner = [], {}
        for entry, message in batch:
            try:
                paths = self._outputs(message)
            except ValueError as exc:
                with self.cond:
                    self.storing.pop(entry["eventRangeID"], None)
                    self._report(entry, "failed", 1165, str(exc))
                continue
            owner[entry["eventRangeID"]] = []
            for path in paths:
                lfn = f"{_SAFE.sub('_', entry['eventRangeID'])}.{os.path.basename(path)}"
                os.replace(path, os.path.join(self.job.workdir, lfn))
                scope = self.job.outputs[0].scope if self.job.outputs else (entry.get("scope") or "")
                spec = FileSpec(lfn=lfn, role="output", scope=scope or "pilot")
                files.append(spec)
                owner[entry["eventRangeID"]].append(spec)
        if files:
            destinations.prepare(self.ctx, files, ES_ACTIVITIES)
            failover = queue_storages(self.ctx, FAILOVER_ACTIVITIES)
            for spec in files:
                spec.ddmendpoint_alt = failover[0] if failover and failover[0] != spec.ddmendpoint else ""
            try:
                transfer_files(self.ctx, self.job, files, ES_ACTIVITIES, "out")
                again = destinations.retry_candidates(self.ctx, self.job, files)
                if again:
                    transfer_files(self.ctx, self.job, again, FAILOVER_ACTIVITIES + ES_ACTIVITIES, "out")
            except Exception as exc:  # noqa: BLE001 -- a configuration error (PilotError) or a bug fails the ranges
                for spec in files:
                    if spec.status != "transferred":
                        spec.status, spec.status_code = "failed", getattr(exc, "code", 1137)
                        spec.diag = getattr(exc, "diag", str(exc))
        for entry, _message in batch:
            specs = owner.get(entry["eventRangeID"])
            if specs is None:
                continue
            bad = [spec for spec in specs if spec.status != "transferred"]
            with self.cond:
                self.storing.pop(entry["eventRangeID"], None)
                if bad:
                    self._report(entry, "failed", bad[0].status_code or 1137, bad[0].diag)
                else:
                    self._report(entry, "finished")
                    self.job.metrics["esStored"] = self.job.metrics.get("esStored", 0) + len(specs)
            for spec in specs:
                path = os.path.join(self.job.workdir, spec.lfn)
                if spec.status == "transferred" and os.path.exists(path):
                    os.unlink(path)

    # --- the end ------------------------------------------------------------------------------------------------
    def finish(self, exit_code: int) -> None:
        """After the payload has exited: settle every range, deliver the reports, close the channel."""
        with self.cond:
            self.done = True
            self.cond.notify_all()
        os.write(self._fds[REPLIES_FIFO], _STOP_READER.encode())
        for thread in self._threads[:2]:
            thread.join(timeout=10)
        stop = fired_stop(self.ctx, self.job)
        with self.cond:
            self._take_answers()
        self.outbox.put(None)
        deadline = self.ctx.delivery_deadline() if stop is not None else time.monotonic() + 3600.0
        self._threads[2].join(timeout=max(1.0, deadline - time.monotonic() - 5.0))
        code, diag = ((stop.code, f"{stop.reason}: range in flight") if stop is not None else
                      (1224, f"payload exited ({exit_code}) without answering the range"))
        with self.cond:
            leftovers = list(self.sent.values()) + list(self.ready) + list(self.storing.values())
            self.sent.clear(), self.ready.clear(), self.storing.clear()
            for entry in leftovers:
                self._report(entry, "failed", code, diag)
        left = self.reporter.finish(min(self.ctx.delivery_deadline(), time.monotonic() + 600.0))
        for name, fd in self._fds.items():
            os.close(fd)
            path = os.path.join(self.job.workdir, name)
            if os.path.lexists(path):
                os.unlink(path)
        self.job.nevents = self.events_done
        self.job.metrics.update(esFinished=self.counts["finished"], esFailed=self.counts["failed"])
        log.info("job %s: event ranges: %d fetched, %d finished, %d failed, %d update(s) undelivered, %d bad "
                 "message(s)", self.job.jobid, self.counts["fetched"], self.counts["finished"],
                 self.counts["failed"], left, self.bad_messages)
        if stop is None and exit_code == 0 and not self.counts["fetched"]:
            self.job.fail(1238, "the server gave this event-service job no event ranges")
        elif stop is None and exit_code == 0 and self.counts["failed"] and not self.counts["finished"]:
            self.job.fail(1224, f"all {self.counts['failed']} event range(s) failed")

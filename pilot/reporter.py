"""How a job's state reaches its channel: the stage that owns the job reports, the heartbeat only sends copies.

A Job is changed only by the stage holding it (DESIGN principle 1). So every update dict is built in the owner's
thread: `report()` sends `starting` (the first update) and the final state; `publish()` leaves a snapshot of the
job that the heartbeat thread sends as `running` until the final update, and `running()` also sends it at once
(the payload started). Updates of one job are serialised here, never by a lock on the Job.

What the server answers (spec panda-server.md A.7) comes back as messages: tobekilled (1144), alreadydone
(1236) and a lost heartbeat (1317) fire the job's kill trigger, the one cross-thread signal a job has; softkill
fires the pilot's drain; debug/debugoff and the output of a debug command stay here, with the updates they
change; nocleanup is queued on `job.commands` for the owner to apply (`Job.apply_commands`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import field
from typing import Any, Dict, List, Optional

from .channels.base import Channel, Reply
from .errors import PilotError
from .job import Job
from .jobwire import iso_now, update_dict
from .monitor.heartbeat import DEBUG_VERBS, Heartbeat, run_debug_command
from .records import Record, record
from .threads import INTERNAL_ERROR, internal_diag

log = logging.getLogger(__name__)

OWNER_COMMANDS = ("nocleanup",)  # commands that change the Job itself: applied by its owner


@record
class _Record(Record):
    """What the reporter keeps of one job between its first and its final update (guarded by `lock`)."""

    job: Job  # only its jobid, kill trigger and command queue are used outside the owner's thread
    workdir: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    snapshot: Optional[Dict[str, Any]] = None
    debug: bool = False
    debug_stdout: str = ""
    last_ack: float = field(default_factory=time.monotonic)
    final: bool = False


class Reporter:
    def __init__(self, ctx, channel: Channel):
        self.ctx = ctx
        self.channel = channel
        self.unreported: List[str] = []
        self._static = ctx.static_update_fields()
        self._records: Dict[str, _Record] = {}
        self._lock = threading.Lock()
        self.heartbeat = Heartbeat(ctx, self._beat, self._interval, self._beat_failed, self._check)

    # --- called by the owner of the job ----------------------------------------------------------------------
    def report(self, job: Job, final: bool = False, metadata: Optional[str] = None) -> Optional[Reply]:
        """Send `starting` (first update), `running`, or the final state of `job`; the job is heartbeated from
        its first update until its final one."""
        record = self._record(job)
        if final:
            self.heartbeat.unwatch(job.jobid)
            state = job.state.value
        else:
            state = "starting" if record.sent == 0 else "running"
        reply = self._send(record, update_dict(job, state, self._static, final, metadata), final)
        if final:
            with self._lock:
                self._records.pop(job.jobid, None)
            job.final_report = reply.where if reply else ""
            if reply is None or not reply.ok:
                self.unreported.append(job.jobid)
        else:
            self.publish(job)
            if not self.heartbeat.watched(job.jobid):
                self.heartbeat.watch(job.jobid)
        return reply

    def publish(self, job: Job) -> None:
        """Leave the snapshot of `job` the heartbeat sends next (no-op before its first or after its final update)."""
        with self._lock:
            record = self._records.get(job.jobid)
        if record is None:
            return
        snapshot = update_dict(job, "running", self._static, False)
        with record.lock:
            if not record.final:
                record.snapshot, record.workdir = snapshot, job.workdir

    def running(self, job: Job) -> None:
        """The payload started: publish and have the heartbeat thread send `running` now (never wait for it)."""
        self.publish(job)
        if job.jobid in self._records:
            self.heartbeat.beat_soon(job.jobid)

    def start(self) -> None:
        self.heartbeat.start()

    def stop(self) -> None:
        self.heartbeat.stop()

    # --- internals -------------------------------------------------------------------------------------------
    def _record(self, job: Job) -> _Record:
        with self._lock:
            record = self._records.get(job.jobid)
            if record is None:
                record = self._records[job.jobid] = _Record(job=job, workdir=job.workdir)
            return record

    def _send(self, record: _Record, data: Dict[str, Any], final: bool) -> Optional[Reply]:
        job = record.job
        with record.lock:
            if record.final:
                return None  # a heartbeat that lost the race with the final update: never send it after
            if record.debug_stdout:
                data["stdout"] = record.debug_stdout
            try:
                reply = self.channel.update(job, data, final)
            except (OSError, PilotError) as exc:
                log.error("job %s: %s update could not be delivered: %s", job.jobid, data["state"], exc)
                reply = Reply(ok=False, where=str(exc))
            record.sent += 1
            record.final = final
            if reply.ok:
                record.debug_stdout = ""
                record.last_ack = time.monotonic()
        log.info("job %s: %s update %s%s", job.jobid, data["state"], "acknowledged" if reply.ok else "NOT delivered",
                 f" (commands: {','.join(reply.commands)})" if reply.commands else "")
        if not final:
            self._apply(record, reply.commands)
        return reply

    def _beat(self, jobid: str) -> None:
        """From the heartbeat thread: send the latest snapshot; stop a job the server must think lost."""
        with self._lock:
            record = self._records.get(jobid)
        if record is None:
            return
        with record.lock:
            snapshot = dict(record.snapshot or {}, timestamp=iso_now())
        if snapshot.get("state"):
            self._send(record, snapshot, False)
        silent = time.monotonic() - record.last_ack
        if silent > self.ctx.config.pilot.lost_heartbeat and not record.job.kill.is_set():
            # the server has declared this job lost long ago: stop wasting the slot on it
            record.job.kill.fire(1317, f"no update of job {jobid} acknowledged for {silent:.0f} s (lost heartbeat)")

    def _check(self, jobid: str) -> None:
        """From the heartbeat thread, between heartbeats: the job's pending server commands, without an update."""
        with self._lock:
            record = self._records.get(jobid)
        if record is None or record.final or record.job.kill.is_set():
            return  # already being stopped: the server is not asked again
        started = time.monotonic()
        commands = self.channel.commands(record.job)
        if commands:
            log.info("job %s: command check found %s (%.2f s)", jobid, ",".join(commands), time.monotonic() - started)
            self._apply(record, commands)

    def _beat_failed(self, jobid: str, exc: Exception) -> None:
        with self._lock:
            record = self._records.get(jobid)
        if record is not None:
            record.job.kill.fire(INTERNAL_ERROR, internal_diag("heartbeat", exc))

    def _interval(self, jobid: str) -> float:
        cfg = self.ctx.config.pilot
        with self._lock:
            record = self._records.get(jobid)
        return cfg.debug_heartbeat if record is not None and record.debug else cfg.heartbeat

    def _apply(self, record: _Record, commands: List[str]) -> None:
        """Act on the commands of one update reply (see the module docstring for who applies what)."""
        job = record.job
        for command in commands:
            if command == "tobekilled":
                job.kill.fire(1144, "job killed by the PanDA server (tobekilled)")
            elif command == "alreadydone":
                if not job.kill.is_set():
                    job.kill.fire(1236, "server reports the job as already done (alreadydone)")
            elif command == "softkill":
                self.ctx.drain.fire(0, f"server sent softkill for job {job.jobid}")
            elif command in ("debug", "debugoff"):
                with record.lock:
                    record.debug = command == "debug"
            elif " " in command or command in DEBUG_VERBS:
                output = run_debug_command(command, record.workdir)
                with record.lock:
                    record.debug_stdout = output
            elif command in OWNER_COMMANDS:
                job.commands.put(command)
            else:
                log.warning("job %s: unknown server command %r ignored", job.jobid, command)

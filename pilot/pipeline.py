"""Build the stages, join them with queues, run them, and turn how the run ended into the exit code.

    retrieve -> validate -> stagein -> execute -> stageout -> finalize
                   \\__________\\__________\\____ failed job ____/^

Every stage is a thread blocked on its inbox; a failed job jumps straight to stage-out (which then ships only
the log) and finalize. The main thread only supervises: it sleeps on one SimpleQueue that signal handlers, the
finalize stage and the lifetime deadline write to, so a signal or the end of the last job is acted on at once.
"""

from __future__ import annotations

import logging
import queue
import signal
import time
from typing import Any, Dict, List, Optional

from .channels.base import Channel, Reply
from .errors import PilotError, shell_exit_code
from .job import Job, JobState, update_dict
from .monitor.features import ShutdownWatch
from .monitor.heartbeat import Heartbeat, apply_commands
from .stages.base import STOP, Stage
from .stages.execute import ExecuteStage
from .stages.finalize import FinalizeStage
from .stages.retrieve import RetrieveThread
from .stages.stagein import StageInStage
from .stages.stageout import StageOutStage
from .stages.validate import ValidateStage
from .threads import INTERNAL_ERROR, join_all

log = logging.getLogger(__name__)

HANDLED_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGXCPU", "SIGHUP")


class Pipeline:
    def __init__(self, ctx, channel: Channel):
        self.ctx = ctx
        self.channel = channel
        self.control: "queue.SimpleQueue" = queue.SimpleQueue()  # put() is safe inside signal handlers
        self.stages: List[Stage] = [cls(ctx, self) for cls in (ValidateStage, StageInStage, ExecuteStage,
                                                               StageOutStage, FinalizeStage)]
        self.by_name: Dict[str, Stage] = {stage.name_: stage for stage in self.stages}
        self.retrieve = RetrieveThread(ctx, self, channel, self.stages[0].inbox)
        self.heartbeat = Heartbeat(ctx, self)
        self.shutdown = ShutdownWatch(ctx, ctx.config.pilot.features_check)
        self.finished_jobs: List[Job] = []
        self.unreported: List[str] = []
        self._static = ctx.static_update_fields()

    # --- called by stages ------------------------------------------------------------------------------------
    def route(self, stage: Stage, job: Job) -> None:
        index = self.stages.index(stage)
        if index == len(self.stages) - 1:
            self.finished_jobs.append(job)
            self.retrieve.release_slot()
            return
        stageout = self.by_name["stageout"]
        target = stageout if job.failed and index < self.stages.index(stageout) else self.stages[index + 1]
        target.inbox.put(job)

    def stage_stopped(self, stage: Stage) -> None:
        index = self.stages.index(stage)
        if index + 1 < len(self.stages):
            self.stages[index + 1].inbox.put(STOP)
        else:
            self.control.put(("done", None))

    def report(self, job: Job, final: bool = False, metadata: Optional[str] = None) -> Optional[Reply]:
        """Send one update of `job` through the channel: `starting` first, `running` after, final state last.

        Updates of one job are serialised (stages and the heartbeat thread both report); the server's commands
        in the reply are applied; the job is heartbeated from its first update until its final one.
        """
        if final:
            self.heartbeat.unwatch(job)
        with job.update_lock:
            if not final and job.state in (JobState.FINISHED, JobState.FAILED):
                return None  # a heartbeat that lost the race with the final update: never send it after
            if final:
                state = job.state.value
            else:
                state = "starting" if job.updates_sent == 0 else "running"
            data = update_dict(job, state, self._static, final, metadata)
            try:
                reply = self.channel.update(job, data, final)
            except (OSError, PilotError) as exc:
                log.error("job %s: %s update could not be delivered: %s", job.jobid, state, exc)
                reply = Reply(ok=False, where=str(exc))
            job.updates_sent += 1
            if reply.ok:
                job.debug_stdout = ""
                job.last_heartbeat = time.monotonic()
            log.info("job %s: %s update %s%s", job.jobid, state, "acknowledged" if reply.ok else "NOT delivered",
                     f" (commands: {','.join(reply.commands)})" if reply.commands else "")
        if final:
            job.final_report = reply.where
            if not reply.ok:
                self.unreported.append(job.jobid)
        else:
            if job.updates_sent == 1:
                self.heartbeat.watch(job)
            apply_commands(self.ctx, job, reply.commands)
        return reply

    def check_commands(self, job: Job) -> None:
        """Ask the channel for the job's pending server commands between heartbeats, and apply them."""
        if job.kill.is_set() or job.state in (JobState.FINISHED, JobState.FAILED):
            return
        started = time.monotonic()
        commands = self.channel.commands(job)
        if commands:
            log.info("job %s: command check found %s (%.2f s)", job.jobid, ",".join(commands),
                     time.monotonic() - started)
            apply_commands(self.ctx, job, commands)

    # --- supervision -----------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.control.put(("signal", signum))

    def install_signal_handlers(self) -> None:
        for name in HANDLED_SIGNALS:
            signal.signal(getattr(signal, name), self._on_signal)

    def run(self) -> int:
        """Run until every job is finalized (or the abort grace runs out); return the pilot's exit code."""
        self.shutdown.poll()  # before the first job request: a node about to go takes no job
        for stage in self.stages:
            stage.start()
        self.retrieve.start()
        self.heartbeat.start()
        with self.ctx.on_abort(lambda: self.control.put(("abort", None))):
            grace_deadline = self._supervise()
        self.heartbeat.stop()
        if grace_deadline is None:
            grace_deadline = self.ctx.elapsed() + self.ctx.config.pilot.abort_grace
        join_all([self.retrieve, *self.stages, self.heartbeat],
                 time.monotonic() + max(0.0, grace_deadline - self.ctx.elapsed()))
        self.channel.close()
        return self.exit_code()

    def _supervise(self) -> Optional[float]:
        """Wait for the end of the last job, a signal, an abort or the lifetime; the grace deadline if one ran."""
        grace_deadline: Optional[float] = None
        shutdown = self.shutdown
        while True:
            shutdown.poll()  # an announced node shutdown cuts the lifetime (looked at once a minute, as Pilot 3)
            now = self.ctx.elapsed()
            looking = False  # this wait ends only for the next look at the machine/job features
            if grace_deadline is not None:
                timeout = max(0.0, grace_deadline - now)
            else:
                timeout = max(0.0, self.ctx.lifetime - self.ctx.config.pilot.lifetime_margin - now)
                look = shutdown.wait_limit()
                if look is not None and look < timeout:
                    timeout, looking = look, True
            try:
                kind, value = self.control.get(timeout=timeout)
            except queue.Empty:
                if looking:
                    continue
                if grace_deadline is not None:
                    log.error("abort grace of %d s over: exiting with jobs still in the pipeline",
                              self.ctx.config.pilot.abort_grace)
                    break
                if shutdown.announced:
                    when, where = shutdown.announced
                    self.ctx.request_abort(1213, f"node shutdown announced in {where} for "
                                                 f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(when))} UTC")
                else:
                    self.ctx.request_abort(1213, f"pilot lifetime of {self.ctx.lifetime:.0f} s is nearly over")
                grace_deadline = self.ctx.elapsed() + self.ctx.config.pilot.abort_grace
                continue
            if kind == "done":
                break
            if kind == "abort":  # requested by a thread (an internal error): the same grace as for a signal
                if grace_deadline is None:
                    grace_deadline = self.ctx.elapsed() + self.ctx.config.pilot.abort_grace
            elif kind == "signal":
                name = signal.Signals(value).name
                if self.ctx.abort_by_signal(value, name):
                    grace_deadline = self.ctx.elapsed() + self.ctx.config.pilot.abort_grace
                else:
                    log.warning("%s received while already stopping: ignored", name)
        return grace_deadline

    def exit_code(self) -> int:
        ctx = self.ctx
        if ctx.signum:
            return shell_exit_code(0, ctx.signum)
        if ctx.abort_code:
            return shell_exit_code(ctx.abort_code)
        if self.unreported:
            log.error("final state of job(s) %s not delivered", ", ".join(self.unreported))
            return shell_exit_code(1318)
        internal = [job.jobid for job in self.finished_jobs if INTERNAL_ERROR in (code for code, _ in job.errors)]
        if internal:  # a pilot bug: the job was reported, but the pilot must not look successful
            log.error("job(s) %s failed of an internal pilot error", ", ".join(internal))
            return shell_exit_code(INTERNAL_ERROR)
        if not self.finished_jobs and self.retrieve.error_code:
            return shell_exit_code(self.retrieve.error_code)
        return 0

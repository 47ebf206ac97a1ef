"""Build the stages, join them with queues, run them, and turn how the run ended into the exit code.

    retrieve -> validate -> stagein -> execute -> stageout -> finalize
                   \\__________\\__________\\____ failed job ____/^

Every stage is a thread blocked on its inbox; a failed job jumps straight to stage-out (which then ships only
the log) and finalize. The main thread only supervises: it sleeps on one SimpleQueue that signal handlers, the
finalize stage and the lifetime deadline write to, so a signal or the end of the last job is acted on at once.

It never sleeps longer than SIGNAL_TICK at a time. The kernel may hand a signal sent to the pilot to any of its
threads; Python then runs the handler only once the main thread next executes bytecode, and a main thread blocked
in a queue wait is not woken by a signal another thread took. Without the tick such a SIGTERM waited for the next
queue item -- the end of the job, which then ran to completion and exited 0 (seen in the signal tests under load).
"""

from __future__ import annotations

import logging
import queue
import signal
import time
from typing import Any, Dict, List, Optional

from .channels.base import Channel
from .errors import shell_exit_code
from .job import Job
from .monitor.features import ShutdownWatch
from .reporter import Reporter
from .stages.base import STOP, Outbox, Stage
from .stages.execute import ExecuteStage
from .stages.finalize import FinalizeStage
from .stages.retrieve import RetrieveThread
from .stages.stagein import StageInStage
from .stages.stageout import StageOutStage
from .stages.validate import ValidateStage
from .threads import INTERNAL_ERROR, join_all

log = logging.getLogger(__name__)

HANDLED_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGXCPU", "SIGHUP")
SIGNAL_TICK = 0.25  # s: the longest a signal taken by another thread waits for its handler (see above)


class _Finished:
    """The outbox of the last stage: a finalized job frees a retrieve slot; STOP wakes the supervisor."""

    def __init__(self, pipeline: "Pipeline"):
        self.pipeline = pipeline

    def put(self, item) -> None:
        if item is STOP:
            self.pipeline.control.put(("done", None))
            return
        self.pipeline.finished_jobs.append(item)
        self.pipeline.retrieve.release_slot()


class Pipeline:
    def __init__(self, ctx, channel: Channel):
        self.ctx = ctx
        self.channel = channel
        self.control: "queue.SimpleQueue" = queue.SimpleQueue()  # put() is safe inside signal handlers
        self.reporter = Reporter(ctx, channel)
        self.stages: List[Stage] = [cls(ctx, self.reporter) for cls in (ValidateStage, StageInStage, ExecuteStage,
                                                                        StageOutStage, FinalizeStage)]
        self.by_name: Dict[str, Stage] = {stage.name_: stage for stage in self.stages}
        self.retrieve = RetrieveThread(ctx, channel, self.stages[0].inbox)
        self.shutdown = ShutdownWatch(ctx, ctx.config.pilot.features_check)
        self.finished_jobs: List[Job] = []
        connect(self.stages, _Finished(self))

    @property
    def unreported(self) -> List[str]:
        return self.reporter.unreported

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
        self.reporter.start()
        with self.ctx.on_abort(lambda: self.control.put(("abort", None))):
            grace_deadline = self._supervise()
        self.reporter.stop()
        if grace_deadline is None:
            grace_deadline = self.ctx.elapsed() + self.ctx.config.pilot.abort_grace
        join_all([self.retrieve, *self.stages, self.reporter.heartbeat],
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
            wait = min(timeout, SIGNAL_TICK)
            try:
                kind, value = self.control.get(timeout=wait)
            except queue.Empty:
                if looking or wait < timeout:  # a look at the features, or a tick: pending handlers have run
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
                self._late_signals()
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

    def _late_signals(self) -> None:
        """A signal whose handler ran only as the last job ended still decides the exit status (128 + N)."""
        while True:
            try:
                kind, value = self.control.get_nowait()
            except queue.Empty:
                return
            if kind == "signal" and self.ctx.abort_by_signal(value, signal.Signals(value).name):
                log.warning("%s received as the last job ended", signal.Signals(value).name)

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


def connect(stages: List[Stage], done) -> None:
    """Each stage's outbox: the next stage, and for a failed job before stage-out the stage-out stage (which then
    ships only the log); the last stage's outbox is `done`."""
    names = [stage.name_ for stage in stages]
    stageout = stages[names.index("stageout")] if "stageout" in names else None
    for index, stage in enumerate(stages):
        following = stages[index + 1].inbox if index + 1 < len(stages) else done
        skip_to = stageout.inbox if stageout is not None and index + 1 < names.index("stageout") else None
        stage.outbox = Outbox(following, skip_to)

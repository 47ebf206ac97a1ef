"""The base of every long-lived pilot thread: an exception in it is an internal error with a code, never silence.

A thread that dies of a bug leaves work undone that nobody notices: a payload running unwatched, a pilot
ending with exit 0 after losing a job. So every pilot thread runs its work through `GuardedThread.run`, where
any exception is logged once (with its traceback, in the pilot log only) and handed to the thread's `on_crash`
with code 1319 (INTERNALPILOTPROBLEM): the job monitor kills its job, the pipeline threads abort the pilot.

The threads stay daemons only so that one stuck in a system call cannot keep the process alive forever; the
pipeline joins them all at shutdown within the abort grace (`join_all`), as `concurrent.futures` joins its
workers, and names any it had to leave behind.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable, List, Optional

from .errors import CODES

log = logging.getLogger(__name__)

INTERNAL_ERROR = CODES["INTERNALPILOTPROBLEM"]  # 1319


def internal_diag(where: str, exc: BaseException) -> str:
    """The short diagnostic of an internal error, as the server sees it."""
    return f"internal pilot error in {where}: {type(exc).__name__}: {exc}"


class GuardedThread(threading.Thread):
    """Subclasses implement `work()` (and may implement `wrap_up()`, run however `work` ends)."""

    def __init__(self, name: str, on_crash: Optional[Callable[[int, str], object]] = None):
        super().__init__(name=name, daemon=True)
        self._on_crash = on_crash
        self.crash: Optional[BaseException] = None  # the exception that ended work(), if any

    def run(self) -> None:
        try:
            self.work()
        except Exception as exc:
            self.crash = exc
            diag = internal_diag(f"thread {self.name}", exc)
            log.error("%s", diag, exc_info=True)
            self.crashed(INTERNAL_ERROR, diag)
        finally:
            self.wrap_up()

    def work(self) -> None:
        raise NotImplementedError

    def wrap_up(self) -> None:
        """Hand-over that must happen however the thread ended (e.g. tell the next stage there is no more)."""

    def crashed(self, code: int, diag: str) -> None:
        if self._on_crash is not None:
            try:
                self._on_crash(code, diag)
            except Exception:  # the crash handler itself failing must still leave a trace, not a second crash
                log.exception("thread %s: handling its own failure failed", self.name)


def join_all(threads: Iterable[threading.Thread], deadline: float) -> List[str]:
    """Join `threads` until time.monotonic() `deadline`; the names of those still running after it."""
    left = []
    for thread in threads:
        if thread.ident is None:
            continue  # never started
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            left.append(thread.name)
    if left:
        log.warning("thread(s) still running at exit, left behind: %s", ", ".join(left))
    return left


class _Call(GuardedThread):
    def __init__(self, name: str, target: Callable[[], object], on_crash: Optional[Callable[[int, str], object]]):
        super().__init__(name, on_crash)
        self._target = target

    def work(self) -> None:
        self._target()


def guarded(name: str, target: Callable[[], object],
            on_crash: Optional[Callable[[int, str], object]] = None) -> GuardedThread:
    """A (not yet started) GuardedThread running `target()`."""
    return _Call(name, target, on_crash)

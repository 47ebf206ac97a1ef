"""A one-shot stop request with a code and callbacks: the pilot-wide abort and each job's kill are both one.

An Event alone cannot run anything when it is set; a stop request must also reach code that is blocked (a
payload being waited for, a thread waiting for a slot). Callbacks registered with `on_fire` run once, in the
thread that fires, outside the lock.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional

log = logging.getLogger(__name__)


class Trigger:
    def __init__(self, what: str = "stop"):
        self.what = what
        self.code = 0
        self.reason = ""
        self.fired_at = 0.0  # time.monotonic() when it fired
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: List[Callable[[], None]] = []

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._event.wait(timeout)

    def fire(self, code: int, reason: str) -> bool:
        """Set the request; the first one wins. Returns False if it was already set."""
        with self._lock:
            if self._event.is_set():
                return False
            self.code, self.reason, self.fired_at = code, reason, time.monotonic()
            self._event.set()
            callbacks = list(self._callbacks)
        log.warning("%s requested: %s (code %d)", self.what, reason, code)
        for callback in callbacks:
            _call(callback)
        return True

    @contextmanager
    def on_fire(self, callback: Callable[[], None]) -> Iterator[None]:
        """Run `callback` if the trigger fires while inside the block (at once if it already has)."""
        with self._lock:
            self._callbacks.append(callback)
            already = self._event.is_set()
        if already:
            _call(callback)
        try:
            yield
        finally:
            with self._lock:
                self._callbacks.remove(callback)


def _call(callback: Callable[[], None]) -> None:
    try:
        callback()
    except OSError as exc:  # callbacks act on processes and files that may be gone already
        log.warning("stop callback %r failed: %s", callback, exc)

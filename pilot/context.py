"""The one object every stage receives: settings, queue data, paths, the clock, and the abort signal.

Cross-thread signalling goes through here and nowhere else (DESIGN principle 1): `abort` is an Event every wait
honours, and `on_abort` registers a callback (kill a payload, wake a waiting thread) that runs once when the
pilot is told to stop. Nothing in it changes after start-up except through those methods.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional

from . import __version__
from .config import Config
from .errors import signal_code
from .queuedata import QueueData

log = logging.getLogger(__name__)


@dataclass
class Paths:
    source: str  # where the pilot was started
    main: str  # the pilot's main work dir (pilotlog.txt, reports, timing)
    input_dir: str  # local storage for the mv copytool's stage-in
    output_dir: str  # local storage for the mv copytool's stage-out


def _batch_id() -> str:
    for var in ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID", "CONDOR_JOBID"):
        if os.environ.get(var):
            return os.environ[var]
    return ""


@dataclass
class Context:
    config: Config
    args: Any  # the parsed command line (argparse.Namespace)
    queuedata: QueueData
    paths: Paths
    started: float = field(default_factory=time.time)  # wall clock at pilot start
    started_mono: float = field(default_factory=time.monotonic)
    lifetime: float = 324000.0
    abort: threading.Event = field(default_factory=threading.Event)
    abort_code: int = 0
    abort_reason: str = ""
    signum: int = 0
    _abort_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _abort_callbacks: List[Callable[[], None]] = field(default_factory=list, repr=False)

    # --- time ---------------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self.started_mono

    def remaining(self) -> float:
        return self.lifetime - self.elapsed()

    # --- abort ---------------------------------------------------------------------------------------------
    def request_abort(self, code: int, reason: str, signum: int = 0) -> bool:
        """Tell every stage to stop; the first request wins. Returns False if an abort was already under way."""
        with self._abort_lock:
            if self.abort.is_set():
                return False
            self.abort_code, self.abort_reason, self.signum = code, reason, signum
            self.abort.set()
            callbacks = list(self._abort_callbacks)
        log.warning("abort requested: %s (code %d)", reason, code)
        for callback in callbacks:
            try:
                callback()
            except OSError as exc:  # a callback acts on processes/files that may be gone already
                log.warning("abort callback %r failed: %s", callback, exc)
        return True

    def abort_by_signal(self, signum: int, name: str) -> bool:
        return self.request_abort(signal_code(signum), f"pilot received {name}", signum)

    @contextmanager
    def on_abort(self, callback: Callable[[], None]) -> Iterator[None]:
        """Run `callback` if an abort happens while inside the block (at once if one already has)."""
        with self._abort_lock:
            self._abort_callbacks.append(callback)
            already = self.abort.is_set()
        if already:
            callback()
        try:
            yield
        finally:
            with self._abort_lock:
                self._abort_callbacks.remove(callback)

    # --- what every server update carries --------------------------------------------------------------------
    def static_update_fields(self) -> Dict[str, Optional[str]]:
        version_tag = getattr(self.args, "version_tag", "PR") or "PR"
        return {
            "siteName": self.queuedata.resource,
            "node": socket.gethostname(),
            "pilotID": f"{os.environ.get('GTAG', '')}|{os.environ.get('PILOT_BATCH_TYPE', '')}|{version_tag}"
                       f"|pilot-{__version__}",
            "batchID": _batch_id(),
            "schedulerID": os.environ.get("PANDA_JSID", ""),
        }

"""Range updates: each one appended to a spool file before anything is sent, sent in batches by one thread,
removed from the spool only once the server acknowledged it. A pilot that dies leaves the unsent ones in
``<spool dir>/events-<PandaID>.jsonl`` (one JSON update per line) for `replay_spooled`.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import threading
import time
from typing import Any, Dict, List

from ..threads import guarded

log = logging.getLogger(__name__)


class RangeReporter:
    def __init__(self, source, spool_dir: str, jobid: str, batch: int, interval: float):
        os.makedirs(spool_dir, exist_ok=True)
        self.source, self.batch, self.interval = source, max(1, batch), max(0.05, interval)
        self.path = os.path.join(spool_dir, f"events-{jobid}.jsonl")
        self._pending: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.sent = 0
        self.commands: List[str] = []
        self._thread = guarded("es-reporter", self._run)  # a bug in it is logged once; the spool keeps the updates

    def start(self) -> "RangeReporter":
        self._thread.start()
        return self

    def add(self, update: Dict[str, Any]) -> None:
        line = json.dumps(update, sort_keys=True) + "\n"
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line)
            self._pending.append(update)
            full = len(self._pending) >= self.batch
        if full:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self._send_once()

    def _send_once(self) -> bool:
        """One batch; True if nothing is left pending."""
        with self._lock:
            batch = list(self._pending[:max(self.batch, 1) * 4])
        if not batch:
            return True
        try:
            ok, commands = self.source.update(batch)
        except Exception:  # noqa: BLE001 -- a reporter bug must not lose the spool; logged, retried later
            log.exception("event range update failed")
            ok, commands = False, []
        self.commands += commands
        if not ok:
            return False
        with self._lock:
            done = {id(update) for update in batch}
            self._pending = [update for update in self._pending if id(update) not in done]
            self.sent += len(batch)
            self._rewrite()
            return not self._pending

    def _rewrite(self) -> None:
        if not self._pending:
            if os.path.exists(self.path):
                os.unlink(self.path)
            return
        with open(self.path + ".part", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(update, sort_keys=True) + "\n" for update in self._pending)
        os.replace(self.path + ".part", self.path)

    def finish(self, deadline: float) -> int:
        """Stop the thread and deliver what is pending until time.monotonic() > deadline; returns how many were
        left undelivered (they stay in the spool file)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        delay = 0.5
        while not self._send_once() and time.monotonic() + delay < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        with self._lock:
            left = len(self._pending)
        if left:
            log.error("%d event range update(s) not delivered: kept in %s", left, self.path)
        return left


def replay_spooled(spool_dir: str, source_for) -> int:
    """Send range updates an earlier pilot left in the spool; `source_for(jobid)` gives an event source.
    Returns how many were delivered."""
    delivered = 0
    for path in sorted(glob.glob(os.path.join(spool_dir, "events-*.jsonl"))):
        jobid = os.path.basename(path)[len("events-"):-len(".jsonl")]
        try:
            with open(path, encoding="utf-8") as handle:
                updates = [json.loads(line) for line in handle if line.strip()]
        except (OSError, ValueError) as exc:
            log.warning("cannot read spooled range updates %s: %s", path, exc)
            continue
        ok, _ = source_for(jobid).update(updates) if updates else (True, [])
        if ok:
            os.unlink(path)
            delivered += len(updates)
    return delivered

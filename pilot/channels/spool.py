"""On-disk spool of job updates: written before sending, removed only when the server acknowledged.

Pilot 3 loses a final update if the server is unreachable at that moment (spec §3.6): nothing is written to disk.
Here a final update is a file first. It is retried with exponential backoff (capped, with jitter) until it is
acknowledged or the pilot's delivery deadline passes; whatever is left is replayed by the next pilot started in
the same work dir, or by `--replay-spool DIR`. Non-final updates (heartbeats) are superseded by the next one,
so a failed heartbeat is not retried, but it is spooled too so a crash mid-send leaves a trace.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ..backoff import backoff_delays
from ..errors import PilotError
from .base import Reply

log = logging.getLogger(__name__)

SUFFIX = ".update.json"


class Spool:
    def __init__(self, directory: str):
        self.directory = directory
        os.makedirs(directory, 0o700, exist_ok=True)

    def write(self, job_id: str, data: Dict[str, Any], final: bool) -> str:
        """Store one update durably; returns its path. The name sorts by job and time."""
        name = f"{job_id}.{time.time_ns()}.{data.get('state', 'update')}{'.final' if final else ''}{SUFFIX}"
        path = os.path.join(self.directory, name)
        record = {"job_id": job_id, "final": final, "created": time.time(), "data": data}
        temp = path + ".tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)  # never a half-written record (a full disk): the caller decides what to do
            raise
        return path

    @staticmethod
    def remove(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def pending(self) -> List[Tuple[str, Dict[str, Any]]]:
        """Spooled final updates, oldest first; unreadable files are reported and left for a human."""
        return list(pending_in(self.directory))


def pending_in(directory: str) -> Iterator[Tuple[str, Dict[str, Any]]]:
    try:
        names = sorted(name for name in os.listdir(directory) if name.endswith(SUFFIX))
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
            if not isinstance(record, dict) or not isinstance(record.get("data"), dict):
                raise ValueError("not a spool record")
        except (OSError, ValueError) as exc:
            log.error("spool file %s is unreadable (%s); left in place", path, exc)
            continue
        if record.get("final"):
            yield path, record
        else:
            Spool.remove(path)  # a stale heartbeat: superseded by whatever the server has now


def deliver(send: Callable[[], Optional[bool]], deadline: Callable[[], float], initial: float, maximum: float,
            wait: Callable[[float], Any], what: str) -> bool:
    """Call `send` until it returns True (acknowledged) or False (refused for good), or the deadline passes.

    `send` returns None for a transient failure. `deadline()` is re-read before every wait (an abort shortens
    it); `wait(seconds)` sleeps, and may return early.
    """
    attempt = 0
    for delay in backoff_delays(initial, maximum):
        attempt += 1
        result = send()
        if result is not None:
            return result
        left = deadline() - time.monotonic()
        if left <= 0:
            log.error("%s: not acknowledged after %d attempt(s); deadline reached, left in the spool", what, attempt)
            return False
        pause = min(delay, left)
        log.warning("%s: attempt %d failed, retrying in %.1f s (%.0f s before the deadline)", what, attempt, pause,
                    left)
        wait(pause)
    return False  # pragma: no cover - backoff_delays never ends


def deliver_final(ctx, path: Optional[str], send: Callable[[], Optional[Reply]], what: str) -> Reply:
    """Deliver the final update spooled in `path`, for every channel: `send()` makes one attempt and returns None
    (transient failure: retried with back-off until ctx's delivery deadline), Reply(ok=True) (acknowledged: the
    file goes) or Reply(ok=False) (refused for good: kept as <path>.refused for a human, out of the replay set).

    Unanswered, or not worth retrying (a PilotError with retry False: refused credentials, an untrusted server
    certificate -- the same token, proxy or CA would fail the same way), the file stays in the spool for the next
    pilot in this work dir or --replay-spool. `path` None: the update could not be spooled (a full disk) and is
    only sent.
    """
    cfg = ctx.config.pilot
    outcome: Dict[str, Reply] = {}

    def attempt() -> Optional[bool]:
        reply = send()
        if reply is None:
            return None
        outcome["reply"] = reply
        return reply.ok

    def wait(seconds: float) -> None:
        if ctx.abort.is_set():
            time.sleep(seconds)
        else:
            ctx.abort.wait(seconds)  # an abort shortens the deadline: wake up to re-read it

    try:
        deliver(attempt, ctx.delivery_deadline, cfg.update_retry_initial, cfg.update_retry_max, wait, what)
    except PilotError as exc:
        if exc.retry:
            raise
        log.error("%s: %s; left in %s for a pilot with valid credentials and trust (or --replay-spool)", what,
                  exc.diag, path)
        return Reply(ok=False, where=f"spooled in {path}")
    reply = outcome.get("reply")
    if reply is None:
        return Reply(ok=False, where=f"spooled in {path}" if path else "not delivered, not spooled")
    if path and reply.ok:
        Spool.remove(path)
    elif path:
        os.replace(path, path + ".refused")
    return reply

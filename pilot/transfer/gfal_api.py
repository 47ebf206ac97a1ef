"""gfal2 operations through its Python bindings (when importable) or the gfal-* commands, behind one interface.

The gfal-* commands are Python scripts: each one starts an interpreter and loads gfal2 and its plug-ins, a few
hundred milliseconds per file before any byte moves. With the bindings importable (python3-gfal2 on Debian/EL,
the grid UI on a worker node) the pilot calls gfal2 in-process instead. Both give the same errors to the
copytool: a PanDA code from the §5.3 text mapping, sharpened by the errno gfal2 reports. A transfer in the
bindings is cancelled through the gfal2 context when the pilot aborts or the job is killed, and bounded by the
same per-file timeout as the command.
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import time
from contextlib import ExitStack
from typing import Optional

from .base import TransferFailure, fired_stop
from .cli import error_code, run_tool

log = logging.getLogger(__name__)

# errno from gfal2 -> (stage-in code, stage-out code); anything else goes through the text mapping
ERRNO_CODES = {errno.ENOENT: (1331, 1137), errno.ETIMEDOUT: (1151, 1152), errno.EEXIST: (1221, 1221),
               errno.EACCES: (1338, 1383), errno.EPERM: (1338, 1383), errno.ENOSPC: (1098, 1333),
               errno.ECONNREFUSED: (1099, 1137)}


def bindings_available() -> bool:
    try:
        return importlib.util.find_spec("gfal2") is not None
    except (ImportError, ValueError):
        return False


def _seconds(timeout: float) -> int:
    """gfal2 takes whole seconds, and 0 would mean no limit."""
    return max(1, int(timeout + 0.999))


class GfalCommands:
    """The gfal-copy / gfal-sum / gfal-rm commands."""

    def __init__(self, ctx, env: dict, job=None):
        self.ctx, self.env, self.job = ctx, env, job

    def copy(self, src: str, dst: str, timeout: float, direction: str, what: str) -> None:
        run_tool(["gfal-copy", "-f", "-t", str(_seconds(timeout)), src, dst], self.ctx, timeout, direction, what,
                 self.env, job=self.job)

    def checksum(self, url: str, kind: str, direction: str) -> str:
        out = run_tool(["gfal-sum", url, kind.upper()], self.ctx, 120, direction, f"checksum of {url}", self.env,
                       job=self.job)
        words = out.strip().split()
        if not words:
            raise TransferFailure(1137 if direction == "out" else 1099, f"gfal-sum gave nothing for {url}")
        return words[-1]

    def remove(self, url: str) -> None:
        run_tool(["gfal-rm", url], self.ctx, 60, "out", f"removing {url}", self.env, job=self.job)


class GfalBindings:
    """The same operations in-process through the gfal2 module."""

    def __init__(self, ctx, env: dict, job=None):
        import gfal2

        self.gfal2, self.ctx, self.job = gfal2, ctx, job
        self.context = gfal2.creat_context()  # reads X509_* from the environment (--capath sets X509_CERT_DIR)

    def _failure(self, exc, direction: str, what: str) -> TransferFailure:
        stop = fired_stop(self.ctx, self.job)
        if stop is not None:
            return TransferFailure(stop.code, f"{what}: interrupted ({stop.reason})")
        message = " ".join(str(getattr(exc, "message", exc)).split())
        number = getattr(exc, "code", 0)
        codes = ERRNO_CODES.get(number)
        code = (codes[0] if direction == "in" else codes[1]) if codes else error_code(message, direction)
        return TransferFailure(code, f"{what}: gfal2 errno {number}: {message}"[:400])

    def _guarded(self, call, direction: str, what: str, timeout: float):
        """call() cancelled by an abort, a job kill or its wall-clock limit, like a command that is killed."""
        import threading

        timer = threading.Timer(timeout, self.context.cancel)
        timer.daemon = True
        started = time.monotonic()
        with ExitStack() as stack:
            for trigger in (self.ctx.abort, getattr(self.job, "kill", None)):
                if trigger is not None:
                    stack.enter_context(trigger.on_fire(self.context.cancel))
            timer.start()
            try:
                result = call()
                failure = None
            except self.gfal2.GError as exc:
                failure = self._failure(exc, direction, what)
            finally:
                timer.cancel()
        if time.monotonic() - started >= timeout and (failure is None or failure.code not in (1151, 1152)):
            stop = fired_stop(self.ctx, self.job)
            if stop is None:
                failure = TransferFailure(1151 if direction == "in" else 1152,
                                          f"{what}: timed out after {timeout:.0f} s")
        if failure is not None:
            raise failure
        return result

    def copy(self, src: str, dst: str, timeout: float, direction: str, what: str) -> None:
        params = self.context.transfer_parameters()
        params.overwrite = True
        params.timeout = _seconds(timeout)
        self._guarded(lambda: self.context.filecopy(params, src, dst), direction, what, timeout)

    def checksum(self, url: str, kind: str, direction: str) -> str:
        return self._guarded(lambda: self.context.checksum(url, kind.upper()), direction, f"checksum of {url}", 120)

    def remove(self, url: str) -> None:
        self._guarded(lambda: self.context.unlink(url), "out", f"removing {url}", 60)


def operations(ctx, env: dict, job=None, use_bindings: Optional[bool] = None):
    """The bindings when importable and allowed ([File] gfal_bindings), else the commands."""
    wanted = ctx.config.file.gfal_bindings if use_bindings is None else use_bindings
    if wanted and bindings_available():
        return GfalBindings(ctx, env, job)
    return GfalCommands(ctx, env, job)

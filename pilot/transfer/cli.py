"""Run a transfer tool's command line: bounded in time, killable on abort, its error text mapped to a code.

Tools run in their own session so a timeout or an abort kills the tool and anything it started (xrdcp and the
gfal2 plug-ins fork helpers). Error text -> PanDA code follows Pilot 3's resolve_common_transfer_errors (§5.3).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from contextlib import ExitStack
from typing import Dict, List, Optional, Tuple

from .. import ownprocs
from .base import TransferFailure, fired_stop

log = logging.getLogger(__name__)

# (substring of the tool's output, stage-in code, stage-out code); first match wins
ERROR_PATTERNS: Tuple[Tuple[str, int, int], ...] = (
    ("timeout", 1151, 1152),
    ("timed out", 1151, 1152),
    ("failed xrdadler32", 1171, 1172),
    ("checksum mismatch", 1171, 1172),
    ("checksums do not match", 1171, 1172),
    ("globus_xio:", 1180, 1181),
    ("file exists", 1221, 1221),
    ("srm_file_busy", 1221, 1221),
    ("no such file", 1331, 1137),
    ("not found", 1331, 1137),
    ("query chksum is not supported", 1242, 1242),
    ("could not establish context", 1163, 1163),
    ("no space left", 1098, 1333),
    ("service is not available", 1324, 1324),
    ("network is unreachable", 1327, 1327),
    ("connection refused", 1099, 1137),
    ("service_unavailable", 1316, 1316),
    ("permission denied", 1338, 1383),
    ("cannot authenticate", 1338, 1383),
    ("auth failed", 1338, 1383),
)


def transfer_timeout(ctx, size: int) -> float:
    """Pilot 3's rule: 400 s + 1 s per MB, at most 3 h (both configurable)."""
    cfg = ctx.config.file
    return min(cfg.transfer_timeout_max, cfg.transfer_timeout_base + size / 1e6)


def error_code(text: str, direction: str) -> int:
    low = text.lower()
    for pattern, code_in, code_out in ERROR_PATTERNS:
        if pattern in low:
            return code_in if direction == "in" else code_out
    if "xrootd" in low and "server" in low and "error" in low:
        return 1362 if direction == "in" else 1137
    return 1099 if direction == "in" else 1137


def run_tool(argv: List[str], ctx, timeout: float, direction: str, what: str, env: Optional[Dict[str, str]] = None,
             job=None, cwd: Optional[str] = None) -> str:
    """Run `argv`; return its output. TransferFailure with the mapped code when it fails, hangs or is aborted."""
    started = time.monotonic()
    try:
        proc = ownprocs.start(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env=dict(os.environ, **(env or {})), start_new_session=True, cwd=cwd)
    except OSError as exc:
        raise TransferFailure(1099 if direction == "in" else 1137, f"{what}: cannot run {argv[0]}: {exc}") from None
    try:
        return _supervise(proc, argv, ctx, timeout, direction, what, job, started)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        ownprocs.done(proc)


def _supervise(proc, argv: List[str], ctx, timeout: float, direction: str, what: str, job, started: float) -> str:

    def kill() -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    with ExitStack() as stack:
        stack.enter_context(ctx.abort.on_fire(kill))
        if job is not None:
            stack.enter_context(job.kill.on_fire(kill))
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill()
            partial, _ = proc.communicate()
            failure = TransferFailure(1151 if direction == "in" else 1152,
                                      f"{what}: {argv[0]} timed out after {timeout:.0f} s")
            failure.output = partial.decode("utf-8", "replace")  # what the tool said before it was killed
            raise failure from None
    text = output.decode("utf-8", "replace")
    if proc.returncode != 0:
        stop = fired_stop(ctx, job)
        if stop is not None:
            failure = TransferFailure(stop.code, f"{what}: interrupted ({stop.reason})")
        else:
            last = " ".join(text.strip().splitlines()[-2:])[:200]
            failure = TransferFailure(error_code(text, direction), f"{what}: {argv[0]} exit {proc.returncode}: {last}")
        failure.output = text
        raise failure
    log.debug("%s: %s done in %.2f s", what, argv[0], time.monotonic() - started)
    return text

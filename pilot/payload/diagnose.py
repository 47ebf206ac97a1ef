"""Why did the payload fail? Exit code, stderr, core files and the payload's own reports -> (code, diag).

Order matters: a container runtime's own failure explains a non-zero exit better than the payload's stderr,
and a known stderr pattern better than the bare exit code (Pilot 3's resolve_transform_error and
set_error_code_from_stderr, spec §10).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Optional, Tuple

from .containers import failure_code
from .untrusted import read_inside, tail_inside

log = logging.getLogger(__name__)

STDERR_PATTERNS = (
    ("unrecognized arguments", 1349),
    ("SL5 is unsupported", 1347),
)


def tail(workdir: str, name: str, limit: int = 8192) -> str:
    """The last `limit` bytes of a text file the payload wrote ('' if missing or unsafe to read)."""
    try:
        data = tail_inside(workdir, name, limit)
    except OSError as exc:
        log.warning("%s not read: %s", name, exc)
        return ""
    return (data or b"").decode("utf-8", "replace")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def failure(exit_code: int, stderr: str, workdir: str, in_container: bool) -> Optional[Tuple[int, str]]:
    """(code, diag) for a payload that exited with `exit_code` (None when it succeeded)."""
    if exit_code == 0:
        return None
    if in_container:
        runtime = failure_code(stderr)
        if runtime:
            return runtime[0], f"container failure (exit {exit_code}): {runtime[1]}"
    cores = sorted(name for name in os.listdir(workdir) if name == "core" or name.startswith("core."))
    if cores:
        return 1355, f"payload exited with code {exit_code} and left a core dump ({cores[0]})"
    if exit_code == 128 + 11:
        return 1328, f"payload died of SIGSEGV (exit {exit_code})"
    last = _last_line(stderr)
    if exit_code == 127:  # the shell's "command not found"
        return 1346, "payload command not found (exit 127)" + (f": {last}" if last else "")
    for line in reversed(stderr.splitlines()):
        for pattern, code in STDERR_PATTERNS:
            if pattern in line:
                return code, f"payload exited with code {exit_code}: {line.strip()[:160]}"
    return 1305, f"payload exited with code {exit_code}" + (f": {last}" if last else "")


def read_json(workdir: str, name: str, limit: int = 1 << 20) -> Optional[Dict[str, Any]]:
    """A small JSON object written by the payload, or None (missing, unsafe, too big, too deep, not an object)."""
    try:
        raw = read_inside(workdir, name, limit)
        data = json.loads(raw.decode("utf-8")) if raw is not None else None
    except (OSError, ValueError, RecursionError) as exc:
        log.warning("unreadable %s: %s", name, str(exc)[:200])
        return None
    return data if isinstance(data, dict) else None


def apply_reports(job, workdir: str, error_report: str, job_report: str) -> None:
    """exeErrorCode/Diag from payload_error_report.json, and exit code/message and nEvents from jobReport.json."""
    errors = read_json(workdir, error_report)
    if errors:
        try:
            job.exe_error_code = int(errors.get("error_code", 0) or 0)
        except (TypeError, ValueError):
            job.exe_error_code = 0
        job.exe_error_diag = str(errors.get("error_diag", ""))[:256]
    report = read_json(workdir, job_report)
    if not report:
        return
    if not job.exe_error_code and isinstance(report.get("exitCode"), int):
        job.exe_error_code = report["exitCode"]
        job.exe_error_diag = str(report.get("exitMsg", ""))[:256]
    events = (report.get("resource") or {}).get("nEvents") if isinstance(report.get("resource"), dict) else None
    events = events if events is not None else report.get("nEvents")
    if isinstance(events, int) and events >= 0:
        job.nevents = events

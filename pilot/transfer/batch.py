"""A job's files in one batch through the XRootD or gfal2 Python bindings, run in a killable child.

The bindings are optional (a grid node has them beside xrdcp and gfal-copy; `python3-xrootd`/`python3-gfal2` on
Debian and EL): without them the copytools move files one command at a time. The child (`batch_worker.py`) runs
under the pilot's own interpreter, which must import them. Callers never trust a batch blindly: what a batch did
not do, or did wrong, goes through the single-file path, which decides the file's PanDA code.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

from .base import TransferFailure
from .cli import run_tool

log = logging.getLogger(__name__)

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "batch_worker.py")
MODULES = {"xrootd": "XRootD", "gfal": "gfal2"}


def bindings(tool: str) -> bool:
    """Whether the pilot's interpreter imports `tool`'s bindings (checked without importing them)."""
    try:
        return importlib.util.find_spec(MODULES[tool]) is not None
    except (ImportError, ValueError):
        return False


def run_batch(tool: str, jobs: Sequence[Dict], width: int, timeout: float, ctx, job, direction: str,
              what: str) -> List[Optional[Dict]]:
    """Run `jobs` ({src, dst, adler32, verify}) in one child; per job its verdict ({ok, error, errno,
    unverified}) or None when the child never reported it (killed at `timeout`, aborted, crashed)."""
    with tempfile.TemporaryDirectory(prefix=".batch-") as scratch:
        request = os.path.join(scratch, "request.json")
        with open(request, "w") as handle:
            json.dump({"tool": tool, "width": width, "timeout": timeout, "jobs": list(jobs)}, handle)
        with open(WORKER, encoding="utf-8") as handle:
            source = handle.read()
        try:
            # -c in an empty dir: the worker's own dir would put pilot/transfer (and its rucio.py) on sys.path
            text = run_tool([sys.executable, "-c", source, request], ctx, timeout, direction, what, job=job,
                            cwd=scratch)
        except TransferFailure as exc:
            log.info("%s: %s", what, exc.diag)
            text = exc.output
    verdicts: List[Optional[Dict]] = [None] * len(jobs)
    for line in text.splitlines():
        if line.startswith('{"i":'):
            try:
                verdict = json.loads(line)
            except ValueError:
                continue
            if 0 <= verdict.get("i", -1) < len(jobs):
                verdicts[verdict["i"]] = verdict
    return verdicts

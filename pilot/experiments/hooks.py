"""The experiment plug-in's hooks as one shell script around the payload command.

Setup lines, pre-process commands, the coprocess and post-process commands run in the payload's own shell (and
so inside its container, its process group and its cgroup): the pilot's kill, memory monitor and clean-up cover
them as they cover the payload, and no second process tree needs watching. A failing pre- or post-process
command writes HOOK_FAILURE_FILE ({"stage", "command", "exit"}) before the shell exits with its code; the execute
stage turns it into 1356 PREPROCESSFAILURE / 1357 POSTPROCESSFAILURE.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from typing import Optional, Tuple

log = logging.getLogger(__name__)

HOOK_FAILURE_FILE = ".pilot_hook_failure.json"
CODES = {"preprocess": 1356, "postprocess": 1357}


def _guarded(stage: str, command: str) -> str:
    """`command`, and on failure the marker file and exit with its code."""
    quoted = json.dumps(command[:200]).replace("%", "%%")  # a printf format: the command's own % are literal
    record = "{\"stage\": \"%s\", \"command\": %s, \"exit\": %%d}" % (stage, quoted)
    return (f"( {command} ); __pilot_rc=$?; if [ $__pilot_rc -ne 0 ]; then "
            f"printf {shlex.quote(record + chr(10))} $__pilot_rc > {HOOK_FAILURE_FILE}; exit $__pilot_rc; fi")


def wrap_payload(command: str, experiment, job, ctx) -> str:
    """The payload `command` with the experiment's setup, pre-process, coprocess and post-process around it."""
    setup = experiment.setup_commands(job, ctx)
    pre = experiment.preprocess(job, ctx)
    post = experiment.postprocess(job, ctx)
    coprocess = experiment.coprocess(job, ctx)
    if not (setup or pre or post or coprocess):
        return command
    lines = list(setup)
    lines += [_guarded("preprocess", line) for line in pre]
    if coprocess:
        lines.append(f"( {coprocess} ) & __pilot_coprocess=$!")
    lines.append(f"{command}")
    lines.append("__pilot_payload_rc=$?")
    if coprocess:
        lines.append("kill $__pilot_coprocess 2>/dev/null; wait $__pilot_coprocess 2>/dev/null")
    if post:
        lines.append("if [ $__pilot_payload_rc -eq 0 ]; then")
        lines += ["  " + _guarded("postprocess", line) for line in post]
        lines.append("fi")
    lines.append("exit $__pilot_payload_rc")
    return "\n".join(lines)


def hook_failure(workdir: str) -> Optional[Tuple[int, str]]:
    """(1356 or 1357, diag) when a pre- or post-process command of the experiment failed, else None."""
    path = os.path.join(workdir, HOOK_FAILURE_FILE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            record = json.loads(handle.read(4096).decode("utf-8", "replace"))
        os.unlink(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return 1356, f"experiment hook failed (unreadable record {HOOK_FAILURE_FILE}: {exc})"
    stage = record.get("stage") if isinstance(record, dict) else None
    if stage not in CODES:
        return None
    return CODES[stage], f"{stage} command failed with exit {record.get('exit')}: {record.get('command')}"

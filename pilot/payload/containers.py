"""Run the payload in a container: apptainer/singularity, podman, or bubblewrap.

When (Pilot 3 rules, spec §11): the job names an image (`--containerImage X` in jobPars, or `container_name`),
or it names a platform (cmtConfig) and the queue's `container_type` has a `pilot` runtime. A job that needs a
container on a queue with no `pilot` runtime fails with 1384; an image that is not there, 1360. The job work dir
is bound at the same path inside, so file names and the pilot's view of the work dir stay the same.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import field
from typing import Dict, List, Optional, Tuple

from ..errors import PilotError
from ..records import Record, record
from ..registry import CONTAINER_RUNTIMES

_IMAGE_OPTION = re.compile(r"(?:^|\s)--containerImage(?:=|\s+)(\S+)")

# stderr patterns of the runtimes -> PanDA codes (Pilot 3's apptainer list, plus podman and bwrap)
FAILURE_PATTERNS: Tuple[Tuple[str, int], ...] = (
    ("Not mounting requested bind point", 1308),
    ("No more available loop devices", 1307),
    ("Failed to mount image", 1309),
    ("error: while mounting", 1309),
    ("Failed invoking the NEWUSER namespace runtime", 1340),
    ("Failed to create user namespace", 1345),
    ("Singularity is not installed", 1325),
    ("Apptainer is not installed", 1372),
    ("could not open image", 1360),
    ("image not known", 1360),
    ("no such image", 1360),
    ("bwrap: Can't find source path", 1360),
    ("bwrap: execvp", 1360),
    ("bwrap: Can't mkdir", 1309),
    ("resource temporarily unavailable", 1348),
    ("bwrap: Creating new namespace failed", 1340),
)


def parse_container_type(value: str) -> Dict[str, str]:
    """'apptainer:pilot;docker:wrapper' -> {'pilot': 'apptainer', 'wrapper': 'docker'}."""
    result: Dict[str, str] = {}
    for part in (value or "").split(";"):
        runtime, sep, role = part.strip().partition(":")
        if sep and runtime and role:
            result[role.strip()] = runtime.strip()
    return result


def split_image_option(jobpars: str) -> Tuple[str, str]:
    """(jobPars without --containerImage X, X or '')."""
    match = _IMAGE_OPTION.search(jobpars)
    if not match:
        return jobpars, ""
    return (jobpars[:match.start()] + jobpars[match.end():]).strip(), match.group(1)


@record
class ContainerPlan(Record):
    runtime: str
    image: str
    options: str = ""
    binds: List[str] = field(default_factory=list)  # host paths bound at the same path (experiment plug-in)


def plan_container(job, queuedata) -> Optional[ContainerPlan]:
    """Whether and how to containerise `job`; raises PilotError 1384/1360/1341 when it cannot be done."""
    jobpars, image = split_image_option(job.jobpars)
    image = image or job.container_name
    runtime = parse_container_type(queuedata.container_type).get("pilot", "")
    if not image and not (job.cmtconfig and runtime):
        return None
    if not runtime:
        raise PilotError(1384, f"job wants container image {image or job.cmtconfig!r} but the queue's "
                               f"container_type has no pilot runtime ({queuedata.container_type!r})")
    if runtime == "singularity" and not shutil.which("singularity") and shutil.which("apptainer"):
        runtime = "apptainer"
    runtime_class = CONTAINER_RUNTIMES.get(runtime)  # 1341 for a runtime no plug-in handles
    if not image:
        raise PilotError(1360, f"no container image for platform {job.cmtconfig!r}: the job names none")
    if not shutil.which(runtime_class.command):
        raise PilotError(runtime_class.missing_code, f"container runtime {runtime} is not installed on this node")
    if image.startswith("/") and not os.path.exists(image):
        raise PilotError(1360, f"container image {image} not found")
    job.jobpars = jobpars
    job.container = f"{runtime}:{image}"
    return ContainerPlan(runtime=runtime, image=image, options=queuedata.container_options or "")


def _shell_in(image: str) -> str:
    if os.path.isdir(image) and not os.path.exists(os.path.join(image, "bin", "bash")):
        return "/bin/sh"
    return "/bin/bash"


class Runtime:
    """A container runtime plug-in (pilot.registry.CONTAINER_RUNTIMES): the argv that runs a command inside."""

    name = ""
    command = ""  # the executable on PATH
    missing_code = 1360  # PanDA code when the executable is not installed

    def wrap(self, plan: ContainerPlan, command: str, workdir: str, env: Dict[str, str]) -> List[str]:
        raise NotImplementedError


def _options(plan: ContainerPlan) -> List[str]:
    return shlex.split(plan.options) if plan.options else []


class Apptainer(Runtime):
    name = command = "apptainer"
    missing_code = 1372

    def wrap(self, plan: ContainerPlan, command: str, workdir: str, env: Dict[str, str]) -> List[str]:
        argv = [self.command, "exec", "-B", workdir, "--pwd", workdir]
        for path in plan.binds:
            argv += ["-B", path]
        return argv + _options(plan) + [plan.image, _shell_in(plan.image), "-c", command]


class Singularity(Apptainer):
    name = command = "singularity"
    missing_code = 1325


class Podman(Runtime):
    name = command = "podman"
    passed_env = ("PandaID", "PanDA_TaskID", "ATHENA_PROC_NUMBER", "ATHENA_CORE_NUMBER", "PILOT_HOME")

    def wrap(self, plan: ContainerPlan, command: str, workdir: str, env: Dict[str, str]) -> List[str]:
        argv = [self.command, "run", "--rm", "-v", f"{workdir}:{workdir}", "-w", workdir]
        for path in plan.binds:
            argv += ["-v", f"{path}:{path}:ro"]
        for key in self.passed_env:
            if key in env:
                argv += ["-e", f"{key}={env[key]}"]
        argv += _options(plan)
        argv += ["--rootfs", plan.image] if plan.image.startswith("/") else [plan.image]
        return argv + [_shell_in(plan.image), "-c", command]


class Bubblewrap(Runtime):
    """The image is an unpacked root file system."""

    name = command = "bwrap"

    def wrap(self, plan: ContainerPlan, command: str, workdir: str, env: Dict[str, str]) -> List[str]:
        return [self.command, "--ro-bind", plan.image, "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
                "--bind", workdir, workdir, *[arg for path in plan.binds for arg in ("--ro-bind", path, path)],
                "--chdir", workdir, "--unshare-all", "--share-net", "--die-with-parent", *_options(plan), _shell_in(plan.image), "-c", command]


def wrap_command(plan: ContainerPlan, command: str, workdir: str, env: Dict[str, str]) -> List[str]:
    """argv that runs the shell `command` inside the container, in `workdir` bound at the same path."""
    return CONTAINER_RUNTIMES.create(plan.runtime).wrap(plan, command, workdir, env)


def failure_code(stderr_tail: str) -> Optional[Tuple[int, str]]:
    """(code, matched line) when the payload's stderr shows a container runtime failure."""
    for line in stderr_tail.splitlines():
        for pattern, code in FAILURE_PATTERNS:
            if pattern.lower() in line.lower():
                return code, line.strip()[:200]
    return None

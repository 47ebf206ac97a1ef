"""The one plug-in registry: every plug-in kind (job channels, copytools, container runtimes, monitor checks,
experiment plug-ins) is a class chosen by name, listed here as "module:Class" and imported only when chosen,
so a pilot loads only what its queue and job use.

An experiment (or a site) adds or replaces a plug-in with `register(name, target)`, where target is a class or
a "module:Class" string; everything else asks `get(name)` / `create(name, ...)` and never imports a plug-in
module itself. An unknown name is a PilotError with the kind's own code and the names that would work.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any, Dict, List, Union

from .errors import PilotError

Target = Union[str, type]


class Registry:
    def __init__(self, kind: str, unknown_code: int, entries: Dict[str, str]):
        self.kind = kind
        self.unknown_code = unknown_code  # the PanDA code when a name is not registered
        self._entries: Dict[str, Target] = dict(entries)
        self._lock = threading.Lock()  # plug-ins are looked up from several stages

    def register(self, name: str, target: Target) -> None:
        """Add or replace the plug-in called `name`."""
        if not name or not isinstance(target, (str, type)):
            raise ValueError(f"{self.kind} plug-in: a name and a class or 'module:Class' string are needed")
        with self._lock:
            self._entries[name] = target

    def names(self) -> List[str]:
        with self._lock:
            return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._entries

    def get(self, name: str) -> type:
        """The class registered as `name` (imported now if it was given as a string)."""
        with self._lock:
            target = self._entries.get(name)
        if target is None:
            raise PilotError(self.unknown_code, f"unknown {self.kind} {name!r} (available: {', '.join(self.names())})")
        if isinstance(target, str):
            module_name, _, class_name = target.partition(":")
            target = getattr(importlib.import_module(module_name), class_name)
            with self._lock:
                self._entries[name] = target
        return target

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)


# --- the plug-in kinds ----------------------------------------------------------------------------------------
# job channels: --job-source NAME[:ADDRESS]; each class has `open(ctx, address, placement)`
CHANNELS = Registry("job source", 1008, {
    "panda": "pilot.channels.panda:PandaChannel",
    "harvester": "pilot.channels.harvester:HarvesterChannel",
    "local": "pilot.channels.local:LocalChannel",
    "picas": "pilot.channels.picas:PicasChannel",
})

# copytools: the names of the queue's acopytools
COPYTOOLS = Registry("copytool", 1323, {
    "mv": "pilot.transfer.mv:MvCopytool",
    "xrdcp": "pilot.transfer.xrdcp:XrdcpCopytool",
    "gfal": "pilot.transfer.gfal:GfalCopytool",
    "gfalcopy": "pilot.transfer.gfal:GfalCopytool",
    "rucio": "pilot.transfer.rucio:RucioCopytool",
    "s3": "pilot.transfer.s3:S3Copytool",
    "objectstore": "pilot.transfer.s3:S3Copytool",  # Pilot 3's name for its object-store copytool
})

# container runtimes: the `pilot` role of the queue's container_type
CONTAINER_RUNTIMES = Registry("container runtime", 1341, {
    "apptainer": "pilot.payload.containers:Apptainer",
    "singularity": "pilot.payload.containers:Singularity",
    "podman": "pilot.payload.containers:Podman",
    "bwrap": "pilot.payload.containers:Bubblewrap",
})

# monitor checks run on every payload (the order is the order they run in)
CHECKS = Registry("monitor check", 1319, {
    "memory": "pilot.monitor.checks:MemoryCheck",
    "disk": "pilot.monitor.checks:DiskSpaceCheck",
    "workdir": "pilot.monitor.checks:WorkdirSizeCheck",
    "stdout": "pilot.monitor.checks:StdoutSizeCheck",
    "output": "pilot.monitor.checks:OutputSizeCheck",
    "looping": "pilot.monitor.checks:LoopingCheck",
    "killfile": "pilot.monitor.checks:KillFileCheck",
    "walltime": "pilot.monitor.checks:WalltimeCheck",
    "proxy": "pilot.monitor.checks:ProxyCheck",
})
DEFAULT_CHECKS = ("memory", "disk", "workdir", "stdout", "output", "looping", "killfile", "walltime", "proxy")

# experiment plug-ins: --pilot-user NAME (lower case: Pilot 3's --pilot-user=ATLAS style is matched too)
EXPERIMENTS = Registry("experiment plug-in (--pilot-user)", 1008, {
    "generic": "pilot.experiments.base:Experiment",
    "example": "pilot.experiments.example:ExampleExperiment",
})

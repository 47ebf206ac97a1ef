"""What the node's CPU is, for the server's accounting: model string, core count, x86-64 micro-architecture level.

Pilot 3 sends `cpuConsumptionUnit` = "s+<CPU model>" (the model string carrying the core count), a
`cpu_architecture_level` (x86-64-v1..v4, or ARM) and `cpuConversionFactor` 1.0. Everything here comes from
/proc/cpuinfo, read once per pilot: the answer does not change while the pilot runs.
"""

from __future__ import annotations

import functools
import os
from typing import Dict, List

# the x86-64 psABI levels, each by the cpuinfo flags it adds to the one below (lzcnt shows as `abm`)
_LEVELS = (
    ("x86-64-v2", ("cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3")),
    ("x86-64-v3", ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave")),
    ("x86-64-v4", ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")),
)


def _cpuinfo(path: str = "/proc/cpuinfo") -> List[Dict[str, str]]:
    """One dict per processor block of /proc/cpuinfo ([] when it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(4 << 20)
    except OSError:
        return []
    blocks = []
    for chunk in text.split("\n\n"):
        entry = {}
        for line in chunk.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip().lower()] = value.strip()
        if entry:
            blocks.append(entry)
    return blocks


def architecture_level(blocks: List[Dict[str, str]], machine: str = "") -> str:
    """x86-64-v1..v4 from the first processor's flags, "ARM" on aarch64/arm, "" when unknown."""
    machine = (machine or os.uname().machine).lower()
    if machine.startswith(("aarch64", "arm")):
        return "ARM"
    if machine not in ("x86_64", "amd64") or not blocks:
        return ""
    flags = set(blocks[0].get("flags", "").split())
    if not flags:
        return ""
    level = "x86-64-v1"
    for name, needed in _LEVELS:
        if not all(flag in flags for flag in needed):
            break
        level = name
    return level


def model(blocks: List[Dict[str, str]], cores: int = 0) -> str:
    """The CPU model string, with "<n>-Core" added when the model does not say how many cores it has."""
    name = ""
    for block in blocks:
        name = block.get("model name") or block.get("cpu model") or block.get("hardware") or ""
        if name:
            break
    name = " ".join(name.split()) or "UNKNOWN"
    cores = cores or os.cpu_count() or 1
    if "-core" not in name.lower():
        name = f"{name} {cores}-Core"
    return name


@functools.lru_cache(maxsize=1)
def node_cpu() -> Dict[str, object]:
    """cpuConsumptionUnit, cpuConversionFactor and cpuArchitectureLevel for every update of this pilot."""
    blocks = _cpuinfo()
    facts: Dict[str, object] = {"cpuConsumptionUnit": f"s+{model(blocks)}"[:128], "cpuConversionFactor": 1.0}
    level = architecture_level(blocks)
    if level:
        facts["cpuArchitectureLevel"] = level
    return facts

"""Experiment plug-ins chosen with --pilot-user NAME: what an experiment adds around a generic payload.

A plug-in may add shell setup lines before the payload command, host paths bound into the payload container
(e.g. /cvmfs), commands run before and after the payload (failures: 1356 PREPROCESSFAILURE, 1357
POSTPROCESSFAILURE) and a coprocess run alongside it. `generic` adds nothing. Names are case-insensitive, so
Pilot 3's `--pilot-user=ATLAS` style is matched too; an unknown name is refused at start-up.
"""

from __future__ import annotations

from typing import Tuple

from ..registry import EXPERIMENTS
from .base import Experiment


def known_experiments() -> Tuple[str, ...]:
    return tuple(EXPERIMENTS.names())


def experiment(name: str) -> Experiment:
    """The plug-in for --pilot-user NAME (PilotError for an unknown name: refused earlier by options.refusal)."""
    return EXPERIMENTS.create(name.lower())

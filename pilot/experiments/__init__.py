"""Experiment plug-ins chosen with --pilot-user NAME: what an experiment adds around a generic payload.

A plug-in may add shell setup lines before the payload command, host paths bound into the payload container
(e.g. /cvmfs), commands run before and after the payload (failures: 1356 PREPROCESSFAILURE, 1357
POSTPROCESSFAILURE) and a coprocess run alongside it. `generic` adds nothing. Names are case-insensitive, so
Pilot 3's `--pilot-user=ATLAS` style is matched too; an unknown name is refused at start-up.
"""

from __future__ import annotations

from typing import Dict, Tuple, Type

from .base import Experiment


def _registry() -> Dict[str, Type[Experiment]]:
    from .example import ExampleExperiment

    return {"generic": Experiment, "example": ExampleExperiment}


def known_experiments() -> Tuple[str, ...]:
    return tuple(sorted(_registry()))


def experiment(name: str) -> Experiment:
    """The plug-in for --pilot-user NAME (KeyError for an unknown name: refused earlier by options.refusal)."""
    return _registry()[name.lower()]()

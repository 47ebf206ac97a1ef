"""The experiment plug-in interface; the base class is the `generic` experiment, which adds nothing."""

from __future__ import annotations

from typing import Dict, List, Optional


class Experiment:
    name = "generic"

    def setup_commands(self, job, ctx) -> List[str]:
        """Shell lines run in the payload's shell before the payload command (e.g. sourcing a release)."""
        return []

    def environment(self, job, ctx) -> Dict[str, str]:
        """Variables added to the payload's environment."""
        return {}

    def container_binds(self, job, ctx) -> List[str]:
        """Host paths bound into the payload container (when the payload runs in one)."""
        return []

    def preprocess(self, job, ctx) -> List[str]:
        """Shell commands run, in order, in the job work dir before the payload; a failure fails the job (1356)."""
        return []

    def postprocess(self, job, ctx) -> List[str]:
        """Shell commands run after a successful payload; a failure fails the job (1357)."""
        return []

    def coprocess(self, job, ctx) -> Optional[str]:
        """A shell command run alongside the payload and stopped when the payload ends (e.g. a monitor)."""
        return None

"""`--pilot-user example`: a worked example of an experiment plug-in, and the template for a real one.

It shows each hook with harmless commands: a setup line exporting the experiment's variables, /cvmfs bound
into containers when the node has it, a pre-process that records the start, a post-process that checks the
payload left its report (when the job asks for one), and a coprocess sampling the work dir's size.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

from .base import Experiment


class ExampleExperiment(Experiment):
    name = "example"

    def setup_commands(self, job, ctx) -> List[str]:
        return ["export EXAMPLE_EXPERIMENT_SETUP=1",
                "[ -f \"${EXAMPLE_SETUP_SCRIPT:-/nonexistent}\" ] && . \"$EXAMPLE_SETUP_SCRIPT\" || true"]

    def environment(self, job, ctx) -> Dict[str, str]:
        return {"EXAMPLE_EXPERIMENT": "example", "EXAMPLE_QUEUE": ctx.queuedata.name}

    def container_binds(self, job, ctx) -> List[str]:
        return ["/cvmfs"] if os.path.isdir("/cvmfs") else []

    def preprocess(self, job, ctx) -> List[str]:
        return ["date -u +%s > example_preprocess.txt"]

    def postprocess(self, job, ctx) -> List[str]:
        return ["test -s example_preprocess.txt", "date -u +%s > example_postprocess.txt"]

    def coprocess(self, job, ctx) -> Optional[str]:
        return "while :; do du -sk . >> example_coprocess.txt 2>/dev/null; sleep 5; done"

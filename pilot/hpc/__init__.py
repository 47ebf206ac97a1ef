"""HPC mode: one pilot per MPI rank on compute nodes without outbound network (spec launchers.md §5).

Harvester (on an edge node) puts the jobs on the shared file system: `<AP>/worker_pandaids.json` lists one
PandaID per rank and `<AP>/<PandaID>/HPCJobs.json` holds each job (ManyToOne), or `<AP>/HPCJobs.json` holds all
jobs, of which rank N takes the N-th. Each rank works in its own scratch dir ([HPC] scratch, or -a), copies
its outputs and log back to the job's directory on the shared file system and declares them there in
event_status.dump.json; Harvester does the real stage-out and reports to PanDA.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Optional

from ..errors import PilotError
from ..records import Record, record

log = logging.getLogger(__name__)

RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID", "ALPS_APP_PE")


def is_hpc_mode(settings) -> bool:
    return settings.workflow == "generic_hpc" or bool(settings.hpc_resource)


def discover_rank() -> int:
    """This process's MPI rank: from the launcher's environment, else mpi4py if importable, else 0."""
    for var in RANK_VARIABLES:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    try:
        from mpi4py import MPI  # optional: only on sites that have it
    except ImportError:
        return 0
    return int(MPI.COMM_WORLD.Get_rank())


@record
class Placement(Record):
    rank: int
    access_point: str  # where this rank's job file is and where its results go
    job_index: int  # which job of the job file this rank takes
    panda_id: Optional[str] = None


def place(shared_ap: str, rank: int, ids_file: str = "worker_pandaids.json") -> Placement:
    """Which job this rank runs and where its files are; PilotError 1008 when there is none for it."""
    ids_path = os.path.join(shared_ap, ids_file)
    if os.path.exists(ids_path):
        try:
            with open(ids_path, encoding="utf-8") as handle:
                ids = json.load(handle)
        except (OSError, ValueError) as exc:
            raise PilotError(1008, f"cannot read {ids_path}: {exc}") from None
        if not isinstance(ids, list) or rank >= len(ids):
            raise PilotError(1008, f"rank {rank} has no job in {ids_path} ({len(ids) if isinstance(ids, list) else 0}"
                                   f" listed)")
        panda_id = str(ids[rank])
        folder = os.path.join(shared_ap, panda_id)
        return Placement(rank=rank, access_point=folder if os.path.isdir(folder) else shared_ap,
                         job_index=0 if os.path.isdir(folder) else rank, panda_id=panda_id)
    return Placement(rank=rank, access_point=shared_ap, job_index=rank)


def scratch_dir(base: str, rank: int) -> str:
    path = os.path.join(base, f"rank_{rank}_{os.getpid()}")
    try:
        os.makedirs(path, 0o755, exist_ok=True)
    except OSError as exc:
        raise PilotError(1199, f"cannot create scratch dir {path}: {exc}") from None
    return path

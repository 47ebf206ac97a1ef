"""The channel interface: where jobs come from and where their updates go (one per back end)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

from ..job import Job


@dataclass
class Reply:
    """What a channel learned from sending an update: acknowledged or not, and any server commands."""

    ok: bool = True
    commands: List[str] = field(default_factory=list)
    where: str = ""  # human-readable location of the report (a file, a URL)


class Channel:
    name = "base"
    # True when an empty fetch may be followed by work later (a server queue): a multi-job pilot then asks again
    # with back-off while its time floor lasts; False when empty means done (a directory of job files)
    retry_when_empty = False

    def fetch(self, max_jobs: int = 1) -> List[Job]:
        """Up to `max_jobs` new jobs; an empty list means there is no more work. Raises PilotError on failure."""
        raise NotImplementedError

    def update(self, job: Job, data: Dict[str, Any], final: bool) -> Reply:
        """Deliver one update of `job` (`data` is the updateJob dict)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release resources; called once when the pipeline has stopped."""

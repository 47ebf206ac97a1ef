"""The channel interface: where jobs come from and where their updates go (one per back end)."""

from __future__ import annotations

from dataclasses import field
from typing import Any, Dict, List, Optional

from ..job import Job
from ..records import Record, record


@record
class Reply(Record):
    """What a channel learned from sending an update: acknowledged or not, and any server commands."""

    ok: bool = True
    commands: List[str] = field(default_factory=list)
    where: str = ""  # human-readable location of the report (a file, a URL)


class Channel:
    """Chosen by name from pilot.registry.CHANNELS (--job-source NAME[:ADDRESS]) and made with `open`."""

    name = "base"
    # True when an empty fetch may be followed by work later (a server queue): a multi-job pilot then asks again
    # with back-off while its time floor lasts; False when empty means done (a directory of job files)
    retry_when_empty = False

    @classmethod
    def open(cls, ctx, address: str = "", placement=None) -> "Channel":
        """The channel for `ctx`, ready to fetch: `address` is what follows NAME: in --job-source."""
        return cls(ctx)

    @property
    def spool_dir(self) -> str:
        """Where this channel spools final updates before sending them ("" for channels that need none)."""
        spool = getattr(self, "spool", None)
        return spool.directory if spool is not None else ""

    def replay(self, directory: str) -> int:
        """Deliver the final updates an earlier pilot spooled in `directory`; how many were acknowledged.

        Channels without a server behind them (local files, Harvester) have nothing to replay.
        """
        return 0

    def fetch(self, max_jobs: int = 1) -> List[Job]:
        """Up to `max_jobs` new jobs; an empty list means there is no more work. Raises PilotError on failure."""
        raise NotImplementedError

    def update(self, job: Job, data: Dict[str, Any], final: bool) -> Reply:
        """Deliver one update of `job` (`data` is the updateJob dict)."""
        raise NotImplementedError

    def commands(self, job: Job) -> Optional[List[str]]:
        """The server's pending commands for a running job, asked without sending an update (a light check between
        heartbeats, so a kill does not wait for the next one). None: this channel has no such check."""
        return None

    def close(self) -> None:
        """Release resources; called once when the pipeline has stopped."""

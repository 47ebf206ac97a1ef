"""Tape awareness: is an input on disk before we try to copy it?

A file that is only on tape (NEARLINE) makes a copytool wait until its own timeout (1151, an hour later, with a
misleading diagnostic). Storages that expose locality answer gfal's ``user.status`` extended attribute with
ONLINE (disk), NEARLINE (tape only) or ONLINE_AND_NEARLINE (both), so before a gfal stage-in the pilot asks
(`gfal-xattr URL user.status`) and, for a NEARLINE-only file, either waits a bounded time for it to come online
([File] bringonline_timeout > 0, after asking the storage to stage it with [File] bringonline_command) or fails
at once with 1099 and "not staged (NEARLINE)" -- GRID_LRT's code 22, "Data not staged".

Only URL schemes in [File] locality_schemes are asked (SRM and XRootD expose the attribute; plain HTTP does not).
If the query itself fails (no gfal-xattr, unsupported by the endpoint, a timeout), the locality is unknown and
the transfer goes ahead: the check may only turn a certain tape wait into a fast, clear failure.
"""

from __future__ import annotations

import logging
import shutil
import time
from typing import Optional

from .base import TransferFailure
from .cli import run_tool
from ..masking import mask

log = logging.getLogger(__name__)

ONLINE = "ONLINE"
NEARLINE = "NEARLINE"
BOTH = "ONLINE_AND_NEARLINE"
NOT_STAGED = "not staged (NEARLINE)"


def locality_schemes(ctx) -> set:
    return {word.strip() for word in str(ctx.config.file.locality_schemes).split(",") if word.strip()}


def query_status(url: str, ctx, env: Optional[dict] = None) -> Optional[str]:
    """``user.status`` of `url` (ONLINE / NEARLINE / ONLINE_AND_NEARLINE / other text), None if unknown."""
    if shutil.which("gfal-xattr", path=(env or {}).get("PATH")) is None:
        log.debug("gfal-xattr not found: locality of %s unknown", mask(url))
        return None
    try:
        out = run_tool(["gfal-xattr", url, "user.status"], ctx, ctx.config.file.locality_timeout, "in",
                       f"locality of {mask(url)}", env)
    except TransferFailure as exc:
        log.info("locality of %s unknown: %s", mask(url), exc.diag)
        return None
    words = out.strip().split()
    return words[-1].upper() if words else None


def ensure_online(url: str, ctx, lfn: str, env: Optional[dict] = None) -> Optional[str]:
    """Return the locality of `url` once it is usable; raise TransferFailure(1099, 'not staged (NEARLINE)')
    (not retried) for a tape-only file that did not come online within [File] bringonline_timeout."""
    cfg = ctx.config.file
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if not cfg.locality_check or scheme not in locality_schemes(ctx):
        return None
    status = query_status(url, ctx, env)
    if status != NEARLINE:
        if status:
            log.info("locality of %s: %s", lfn, status)
        return status
    wait = cfg.bringonline_timeout
    if wait <= 0:
        raise TransferFailure(1099, f"input {lfn} is {NOT_STAGED}: only on tape ({mask(url)[:160]}); stage it "
                                    f"before the job runs (GRID_LRT code 22)", retry=False)
    _request_staging(url, ctx, wait, env)
    deadline = time.monotonic() + wait
    poll = cfg.locality_poll
    while time.monotonic() < deadline:
        if ctx.abort.wait(min(poll, max(0.0, deadline - time.monotonic()))):
            raise TransferFailure(ctx.abort.code, f"waiting for {lfn} to come online: {ctx.abort.reason}",
                                  retry=False)
        status = query_status(url, ctx, env)
        if status in (ONLINE, BOTH):
            log.info("input %s came online after %.0f s", lfn, wait - (deadline - time.monotonic()))
            return status
    raise TransferFailure(1099, f"input {lfn} is {NOT_STAGED}: still only on tape after waiting {wait:.0f} s for "
                                f"bring-online ({mask(url)[:160]}; GRID_LRT code 22)", retry=False)


def _request_staging(url: str, ctx, wait: float, env: Optional[dict]) -> None:
    command = str(ctx.config.file.bringonline_command).split()
    if not command or shutil.which(command[0], path=(env or {}).get("PATH")) is None:
        log.info("no bring-online command (%s): waiting for %s to be staged by others", command[:1], mask(url))
        return
    try:
        run_tool(command + [url], ctx, min(wait, 120.0), "in", f"bring-online of {mask(url)}", env)
    except TransferFailure as exc:
        log.warning("bring-online request for %s failed: %s", mask(url), exc.diag)

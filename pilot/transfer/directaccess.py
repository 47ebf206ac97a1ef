"""Direct access (remote I/O): inputs the payload reads in place instead of copies in the work dir.

Pilot 3's rule: the queue allows it (``direct_access_lan`` for inputs on the queue's own read storages,
``direct_access_wan`` for others) and the job does (its access mode is ``direct``: ``transferType=direct`` or
``--accessmode=direct`` in jobPars; analysis jobs unless ``--accessmode=copy``/``--useLocalIO``). Library
tarballs (``*.lib.tgz``) are always copied.

Each such input gets a root:// or https/davs turl from its storage endpoint's read protocols, is checked to exist
with the catalogue's size (``xrdfs stat`` for root://, ``gfal-stat`` otherwise; bounded and killable), gets
status ``remote_io`` and a Rucio trace with clientState FOUND_ROOT (as Pilot 3). An input that cannot be checked
is copied instead, with a warning: the copy fails with its own code if the file is really missing.

The payload finds the turls in the work dir: ``PoolFileCatalog.xml`` (Pilot 3's file, for ATLAS-style payloads)
and ``pilot_inputs.json`` (``{"<lfn>": "<turl or local file name>"}``), both listing every input.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import List, Optional

from ..job import FileSpec, Job
from .base import STAGEIN_ACTIVITIES, TransferFailure, queue_storages
from .storage import file_url

log = logging.getLogger(__name__)

DIRECT_SCHEMES = ("root", "roots", "xroot", "https", "davs", "http", "dav")
READ_ACTIVITIES = ("read_lan", "read_wan", "default")
CHECK_TIMEOUT = 60.0
_SIZE = re.compile(r"Size:\s+(\d+)")
_TRUE = ("true", "1", "yes", "on")


def _flag(ctx, key: str) -> bool:
    return str(ctx.queuedata.raw.get(key, "")).lower() in _TRUE


def job_allows(job: Job) -> bool:
    if job.access_mode:
        return job.access_mode == "direct"
    return job.prodsourcelabel.lower() in ("user", "panda")  # Pilot 3: analysis jobs read directly by default


def _turl(spec: FileSpec, ctx) -> Optional[tuple]:
    """(turl, is_lan) for a direct-access scheme on the file's storage, or None."""
    if spec.turl and spec.turl.split("://", 1)[0] in DIRECT_SCHEMES:
        return spec.turl, True
    lan = queue_storages(ctx, ("read_lan",)) or queue_storages(ctx, STAGEIN_ACTIVITIES)
    for name in [n for n in [spec.ddmendpoint] + lan if n]:
        endpoint = ctx.storage.get(name)
        if endpoint is None or (not endpoint.is_deterministic and not endpoint.is_objectstore):
            continue
        for activity in READ_ACTIVITIES:
            for base in endpoint.protocols((activity,)):
                if base.split("://", 1)[0] in DIRECT_SCHEMES:
                    return file_url(base, spec.scope, spec.lfn, endpoint, ctx.queuedata.name), name in lan
        return None
    return None


def _env(ctx) -> dict:
    from .gfal import gfal_env

    return gfal_env(ctx)


def remote_size(url: str, ctx, job) -> int:
    """The size of a remote file (TransferFailure when it cannot be found or asked)."""
    from .cli import run_tool

    scheme = url.split("://", 1)[0]
    if scheme in ("root", "roots", "xroot"):
        from .xrdcp import _xrd_split

        server, path = _xrd_split(url)
        argv = ["xrdfs", server, "stat", path]
    else:
        argv = ["gfal-stat", url]
    out = run_tool(argv, ctx, CHECK_TIMEOUT, "in", f"direct-access check of {url}", _env(ctx), job=job)
    found = _SIZE.search(out)
    if not found:
        raise TransferFailure(1361, f"{argv[0]} gave no size for {url}")
    return int(found.group(1))


def apply(ctx, job: Job) -> List[FileSpec]:
    """Mark the inputs the payload will read in place (status remote_io, turl set); returns them."""
    lan_ok, wan_ok = _flag(ctx, "direct_access_lan"), _flag(ctx, "direct_access_wan")
    if not (lan_ok or wan_ok) or not job_allows(job):
        return []
    remote = []
    for spec in job.inputs:
        if spec.lfn.endswith(".lib.tgz") or spec.status == "transferred":
            continue
        found = _turl(spec, ctx)
        if found is None:
            continue
        url, lan = found
        if not (lan_ok if lan else wan_ok):
            continue
        started = time.monotonic()
        try:
            size = remote_size(url, ctx, job)
            if spec.filesize and size != spec.filesize:
                raise TransferFailure(1099, f"remote size {size}, catalogue {spec.filesize}")
        except TransferFailure as exc:
            log.warning("direct access to %s not possible (%s): copying it instead", spec.lfn, exc.diag)
            continue
        spec.turl, spec.status, spec.status_code, spec.copytool = url, "remote_io", 0, "direct"
        spec.filesize = spec.filesize or size
        spec.transfer_seconds = time.monotonic() - started
        remote.append(spec)
        log.info("direct access: %s will be read from %s (%d bytes, checked in %.2f s)", spec.lfn, url, size,
                 spec.transfer_seconds)
    return remote


def write_catalogues(job: Job) -> None:
    """PoolFileCatalog.xml and pilot_inputs.json in the work dir: every input's turl or local name."""
    if not job.inputs or not job.workdir:
        return
    from xml.sax.saxutils import quoteattr  # lazily: it loads urllib.request (~6 MB) into every pilot otherwise

    where = {spec.lfn: spec.turl if spec.status == "remote_io" else spec.lfn for spec in job.inputs}
    entries = []
    for spec in job.inputs:
        name = where[spec.lfn] if spec.status == "remote_io" else f"file:{spec.lfn}"
        entries.append(f'  <File ID={quoteattr(spec.guid or spec.lfn)}>\n    <physical>\n      <pfn filetype='
                       f'"ROOT_All" name={quoteattr(name)}/>\n    </physical>\n    <logical>\n      <lfn name='
                       f'{quoteattr(spec.lfn)}/>\n    </logical>\n  </File>\n')
    xml = ('<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n<!DOCTYPE POOLFILECATALOG SYSTEM '
           '"InMemory">\n<POOLFILECATALOG>\n' + "".join(entries) + "</POOLFILECATALOG>\n")
    for name, text in (("PoolFileCatalog.xml", xml), ("pilot_inputs.json", json.dumps(where, indent=1))):
        path = os.path.join(job.workdir, name)
        with open(path + ".part", "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(path + ".part", path)

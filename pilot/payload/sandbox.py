"""Job sandboxes (GRID_LRT style): download the tarball a job names, unpack it safely, read its variables file.

A PiCaS token names a sandbox tarball (the launcher scripts of the job). The pilot downloads it into the job work
dir, refuses an empty file (GRID_LRT's code -2, "Sandbox downloaded but size 0kB"), unpacks it only after every
member has been checked -- no absolute names, no ``..``, no link pointing outside the work dir, nothing but
files, directories and links, no more than [Payload] sandbox_max_mb -- and reads its ``tokvar.cfg``-style file
of variables into the payload environment.

Codes: anything that keeps the pilot from *getting* a usable tarball (download error, empty file, not a tar
archive, too big) is 1246 NOUSERTARBALL -- the PanDA name for "the job's own tarball could not be obtained",
which is what GRID_LRT's -2 means. A tarball that was obtained but that the pilot refuses to unpack (unsafe
members) or whose variables file is wrong is 1110 SETUPFAILURE: the payload set-up failed because of what the
job brought, and retrying the download would not help.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import shutil
import tarfile
from typing import Dict, List, Mapping, Optional

from ..errors import PilotError
from ..masking import mask
from ..net import download, trust_from

log = logging.getLogger(__name__)

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def fetch(url: str, dest: str, ctx) -> None:
    """Download `url` (http(s)://, file:// or a local path; other schemes through gfal-copy) to `dest`."""
    cfg = ctx.config.payload
    limit = cfg.sandbox_max_mb * 1024 * 1024
    shown = mask(url)[:200]
    if url.startswith(("http://", "https://")):
        download(url, dest, 1246, "sandbox", limit_bytes=limit, timeout=(30, cfg.sandbox_timeout),
                 trust_=trust_from(ctx), shown=shown)
        return
    if url.startswith("file://") or url.startswith("/"):
        path = url[len("file://"):] if url.startswith("file://") else url
        try:
            if os.path.getsize(path) > limit:
                raise PilotError(1246, f"sandbox {shown} is larger than {cfg.sandbox_max_mb} MB")
            shutil.copyfile(path, dest)
        except OSError as exc:
            raise PilotError(1246, f"cannot copy sandbox {shown}: {exc.strerror or exc}") from None
        return
    if "://" not in url:
        raise PilotError(1246, f"sandbox location {shown!r} is neither a URL nor an absolute path")
    from ..transfer.base import TransferFailure
    from ..transfer.cli import run_tool
    from ..transfer.gfal import gfal_env
    from ..transfer.surl import rewrite

    try:  # grid storage (gsiftp://, srm://, root://, davs://): the gfal tools
        run_tool(["gfal-copy", "-f", rewrite(url, "gfal"), f"file://{os.path.abspath(dest)}"], ctx,
                 cfg.sandbox_timeout, "in", f"sandbox download {shown}", gfal_env(ctx))
    except TransferFailure as exc:
        raise PilotError(1246, exc.diag) from None


def check_members(tar: tarfile.TarFile, limit: int) -> List[tarfile.TarInfo]:
    """Every member, if all are safe to unpack into an empty dir; PilotError(1110) naming the first one that is
    not. Links may only point at names inside the archive's own tree."""
    members = tar.getmembers()
    total = 0
    for member in members:
        name = member.name
        shown = name[:120].encode("unicode_escape").decode("ascii")
        if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
            raise PilotError(1110, f"sandbox member {shown} has an absolute path: refused")
        normal = posixpath.normpath(name)
        if normal == ".." or normal.startswith("../") or ".." in name.split("/"):
            raise PilotError(1110, f"sandbox member {shown} points outside the job dir (..): refused")
        if member.issym() or member.islnk():
            target = member.linkname
            base = posixpath.dirname(normal) if member.issym() else ""
            resolved = posixpath.normpath(posixpath.join(base, target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                kind = "symlink" if member.issym() else "hard link"
                raise PilotError(1110, f"sandbox {kind} {shown} -> {target[:120]} leaves the job dir: refused")
        elif not (member.isfile() or member.isdir()):
            raise PilotError(1110, f"sandbox member {shown} is a device, FIFO or other special file: refused")
        total += max(0, member.size)
        if total > limit:
            raise PilotError(1246, f"sandbox unpacks to more than {limit // (1024 * 1024)} MB: refused")
    return members


def unpack(archive: str, dest: str, limit: int) -> int:
    """Unpack `archive` into `dest` after check_members; returns the member count."""
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise PilotError(1246, f"sandbox is not a readable tar archive: {exc}") from None
    with tar:
        try:
            members = check_members(tar, limit)
        except tarfile.TarError as exc:
            raise PilotError(1246, f"sandbox tar archive is corrupt: {exc}") from None
        for member in members:  # no owners, no set-uid bits, whatever Python's tarfile version
            member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
            member.mode &= 0o755 if not member.isdir() else 0o775
        try:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # Python < 3.12 without the backported filters: the members were checked above
                tar.extractall(dest, members=members)
        except (tarfile.TarError, OSError) as exc:
            raise PilotError(1110, f"cannot unpack sandbox: {exc}") from None
    return len(members)


def read_variables(path: str, fields: Optional[Mapping[str, object]] = None) -> Dict[str, str]:
    """KEY=VALUE (or ``export KEY=VALUE``, or ``KEY: VALUE``) lines; ``#`` comments. A bare KEY takes the value
    of the job's field of that name (GRID_LRT's token variables), which must exist (GRID_LRT's code 1)."""
    result: Dict[str, str] = {}
    name = os.path.basename(path)
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].strip()
        match = re.match(r"([^=:\s]+)\s*([=:])?\s*(.*)\Z", line)
        key, sep, value = (match.group(1), match.group(2), match.group(3)) if match else (line, None, "")
        if not _KEY.match(key):
            raise PilotError(1110, f"{name} line {number}: {key[:40]!r} is not a variable name")
        if not sep or (sep == ":" and value == ""):
            if fields is None or key not in fields or fields[key] in (None, ""):
                raise PilotError(1110, f"{name} line {number}: variable {key} is not set in the job (GRID_LRT "
                                       f"code 1)")
            value = str(fields[key])
        elif len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        result[key] = value
    return result


def install_sandbox(url: str, workdir: str, ctx, fields: Optional[Mapping[str, object]] = None) -> Dict[str, str]:
    """Download, check and unpack the sandbox into `workdir`; return the variables of its variables file."""
    cfg = ctx.config.payload
    archive = os.path.join(workdir, ".sandbox.download")
    try:
        fetch(url, archive, ctx)
        try:
            size = os.path.getsize(archive)
        except OSError:
            size = 0
        if size == 0:
            raise PilotError(1246, f"sandbox {mask(url)[:200]} is empty (0 bytes; GRID_LRT code -2)")
        count = unpack(archive, workdir, cfg.sandbox_max_mb * 1024 * 1024 * 4)
    finally:
        if os.path.lexists(archive):
            os.unlink(archive)
    log.info("sandbox %s: %d member(s) unpacked in %s", mask(url), count, workdir)
    variables = os.path.join(workdir, cfg.sandbox_env_file)
    if not cfg.sandbox_env_file or not os.path.isfile(variables) or os.path.islink(variables):
        return {}
    env = read_variables(variables, fields)
    log.info("sandbox variables from %s: %s", cfg.sandbox_env_file, ", ".join(sorted(env)) or "none")
    return env
